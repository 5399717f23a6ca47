"""One robosuite task as a ``gymnasium.Env`` that keeps ript-core's env contract.

The Panda arm under robosuite's operational-space controller (OSC_POSE,
delta actions; 7-d with the gripper), 20 Hz control. Observations are the
simulator's, untranslated (the adapters translate):

- ``images["agentview"]``, ``images["wrist"]`` (``robot0_eye_in_hand``; leave
  it out with ``wrist_camera=False``): ``HxWx3 uint8`` in OpenGL row order,
  i.e. upside down, as robosuite renders them by default (whatever
  ``robosuite.macros.IMAGE_CONVENTION`` says: it is a process-wide switch
  that LIBERO's envs share, so this backend leaves it alone);
  :meth:`RobosuiteEnv.render` returns the upright agent view for videos;
- ``state``: float64 ``[eef_pos (3), eef_quat (4, x y z w), gripper_qpos (2)]``
  (``ript_core.robosuite_state``, the LIBERO backend's layout);
- ``instruction``: the task's language instruction.

Init states. robosuite draws the scene at ``reset()``: object placement
(placement samplers), the robot's joint noise and, at model load, Lift's
cube size. 1.4 draws all of it from the global ``np.random``; 1.5 from
``env.rng`` and each placement sampler's own ``rng``. :meth:`reset` seeds
all of them from :func:`scene_seed` ``(task, i)`` right before robosuite's
``reset()``, and the constructor seeds them before the model is loaded, so
init state ``i`` is the same scene in every process whatever ran before.
The ``seed`` of :meth:`reset` seeds only gymnasium's ``np_random``: it
cannot change the scene, or "init state i" would mean several scenes.
Resets are soft (``hard_reset=False``, ~10x faster than reloading the
model); the one state robosuite keeps across a soft reset, the gripper's
``current_action``, is zeroed.
"""

from __future__ import annotations

import contextlib
from typing import Any

import gymnasium as gym
import numpy as np

from ript_core import (
    checked_action,
    mujoco_gl,
    requested_init_state,
    robosuite_cameras,
    robosuite_quiet,
    robosuite_state,
)
from ript_robosuite import catalogue, versions
from ript_robosuite.options import DEFAULT_IMAGE_SIZE, check_options

CONTROL_FREQ = 20
# robosuite camera names of the two cameras
CAMERAS = {"agentview": "agentview", "wrist": "robot0_eye_in_hand"}
_SEED_TAG = 0x5B05E1  # keeps these seeds apart from other streams seeded by small ints
_CHARSET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,'-_"
# robosuite ends an episode at its horizon; ours is the catalogue's step limit
_NO_HORIZON = 1_000_000


def scene_seed(task: str, init_state: int) -> int:
    """The seed of the scene robosuite draws for init state ``init_state``
    (``-1``: the model loaded at construction)."""
    key = [_SEED_TAG, catalogue.task_index(task), int(init_state) + 1]
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def controller_config(series: str) -> dict[str, Any]:
    """OSC_POSE with delta actions for the Panda, in the installed release's API."""
    import robosuite

    if series == "1.4":
        return robosuite.load_controller_config(default_controller="OSC_POSE")
    # 1.5's "BASIC" composite controller is OSC_POSE on the arm + the gripper;
    # it also configures parts a Panda lacks (left arm, torso, head, base,
    # legs), each of which robosuite warns about twice per env: keep the arm
    config = robosuite.load_composite_controller_config(controller="BASIC", robot="Panda")
    config["body_parts"] = {"right": config["body_parts"]["right"]}
    return config


class RobosuiteEnv(gym.Env):
    """``task`` is a catalogue name, e.g. ``"Lift"``."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_FREQ}

    def __init__(
        self,
        task: str,
        *,
        image_size: int = DEFAULT_IMAGE_SIZE,
        wrist_camera: bool = True,
        render: bool = True,
    ) -> None:
        """``render=False`` (not an env option: such an env returns no images and
        so breaks the observation contract) simulates without cameras, ~10x
        faster; for measuring scripted experts, which read privileged state."""
        check_options({"image_size": image_size, "wrist_camera": wrist_camera})
        self.spec_ = catalogue.locate(task)
        self.task_name = task
        self.instruction = self.spec_.instruction
        self.image_size = image_size
        cameras = dict(CAMERAS) if wrist_camera else {"agentview": CAMERAS["agentview"]}
        self.cameras = cameras if render else {}
        self.n_init_states = catalogue.N_INIT_STATES
        self.step_limit = self.spec_.max_steps + catalogue.SETTLE_STEPS
        self.render_mode = "rgb_array"

        img = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(
            {
                "images": gym.spaces.Dict({cam: img for cam in self.cameras}),
                "state": gym.spaces.Box(-np.inf, np.inf, (robosuite_state.RAW_DIM,), np.float64),
                "instruction": gym.spaces.Text(max_length=256, charset=_CHARSET),
            }
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (catalogue.ACTION_DIM,), np.float32)

        self.series = versions.require_supported()
        if render:
            self.gl_backend = mujoco_gl.select_backend(who="robosuite")
        with robosuite_quiet.quiet_import():
            import robosuite

        if self.series == "1.4":
            from ript_robosuite.compat import patch_robosuite_14

            patch_robosuite_14()
        model_seed = scene_seed(task, -1)
        self._seed_scene(model_seed)
        # 1.5 draws the model's random parts (Lift's cube size) from make's seed
        seed_arg = {} if self.series == "1.4" else {"seed": model_seed}
        self._env = robosuite.make(
            self.spec_.env_name,
            robots="Panda",
            controller_configs=controller_config(self.series),
            has_renderer=False,
            has_offscreen_renderer=render,
            use_camera_obs=render,
            camera_names=list(cameras.values()),
            camera_heights=image_size,
            camera_widths=image_size,
            control_freq=CONTROL_FREQ,
            horizon=_NO_HORIZON,
            ignore_done=True,
            hard_reset=False,
            reward_shaping=False,
            **seed_arg,
        )
        self._exit_hook = render  # registered after the first render (see reset)
        self._raw: dict[str, Any] = {}
        self._skip_images = False
        self._t = 0
        self.init_state = -1

    # -- gymnasium API ------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        index = requested_init_state(
            options, self.n_init_states, self.np_random, backend="robosuite", task=self.task_name
        )
        self._seed_scene(scene_seed(self.task_name, index))
        self._make_gl_current()
        self._skip_images = False
        self._raw = self._env.reset()
        if self._exit_hook:  # the GL context exists now: robosuite creates it at the first render
            mujoco_gl.close_at_exit(self)
            self._exit_hook = False
        for gripper in self._grippers():
            # a soft reset keeps the gripper's integrated command: the next
            # episode's first gripper action would start from the last one's
            gripper.current_action = np.zeros_like(gripper.current_action)
        self._t = 0
        self.init_state = index
        return self._obs(), {"success": self.success(), "init_state": index}

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        a = checked_action(
            action, catalogue.ACTION_DIM, "robosuite (OSC_POSE)",
            "delta eef xyz, delta axis-angle, gripper",
        )  # fmt: skip
        self._make_gl_current()
        skip, self._skip_images = self._skip_images, False
        unread = [f"{name}_image" for name in self.cameras.values()] if skip else []
        with robosuite_cameras.frozen(self._env, unread):
            self._raw, _, _, _ = self._env.step(a)
        self._t += 1
        success = self.success()
        truncated = not success and self._t >= self.step_limit
        info = {"success": success, "init_state": self.init_state}
        return self._obs(), float(success), success, truncated, info

    def skip_next_observation(self) -> None:
        """Next step, the cameras return their last images instead of rendering
        (nobody reads them: ``ript_core.envs.unread``)."""
        self._skip_images = True

    def render(self) -> np.ndarray:
        """The agent-view camera, upright (for videos)."""
        if not self._raw:
            raise RuntimeError("render() before reset()")
        return np.ascontiguousarray(self._image("agentview")[::-1])

    def close(self) -> None:
        env = getattr(self, "_env", None)
        if env is not None:
            self._free_gl()
            env.close()
            self._env = None

    def __del__(self) -> None:
        # an env dropped without close() (a worker's last env when its loop
        # returns) frees its GL context while EGL is still up
        with contextlib.suppress(Exception):
            self.close()

    def _free_gl(self) -> None:
        """Free the GL context now: robosuite only drops its reference, and the
        context then outlives robosuite's ``eglTerminate`` at exit, whose
        ``__del__`` prints an ``EGLError`` traceback (then a no-op)."""
        context = getattr(self._env.sim, "_render_context_offscreen", None)
        if context is not None:
            context.gl_ctx.make_current()
            context.con.free()
            context.gl_ctx.free()

    # -- privileged access (scripted experts, tests) ------------------------------------
    def success(self) -> bool:
        """robosuite's own success check of the task."""
        return bool(self._env._check_success())

    @property
    def robosuite_env(self) -> Any:
        """The robosuite environment (its ``sim``, ``robots``, task objects)."""
        return self._env

    @property
    def sim(self) -> Any:
        return self._env.sim

    @property
    def raw_observation(self) -> dict[str, Any]:
        """robosuite's last observation dict (object poses for the experts)."""
        return self._raw

    # -- helpers ------------------------------------------------------------------------
    def _seed_scene(self, seed: int) -> None:
        np.random.seed(seed)  # 1.4: everything; 1.5: the robot's joint noise
        env = getattr(self, "_env", None)
        if env is None or self.series == "1.4":
            return
        seeds = np.random.SeedSequence(seed).spawn(1 + len(self._samplers()))
        env.rng = np.random.default_rng(seeds[0])
        for sampler, child in zip(self._samplers(), seeds[1:], strict=True):
            sampler.rng = np.random.default_rng(child)

    def _make_gl_current(self) -> None:
        """robosuite renders into whichever GL context is current and makes its
        own current only when it creates it: with a second env in the process
        (another task, a LIBERO env), this env's frames would be garbage."""
        context = getattr(self._env.sim, "_render_context_offscreen", None)
        if context is not None:
            context.gl_ctx.make_current()

    def _samplers(self) -> list[Any]:
        """The env's placement samplers, composites unrolled (1.5 gives each an ``rng``)."""
        out, todo = [], [getattr(self._env, "placement_initializer", None)]
        while todo:
            sampler = todo.pop(0)
            if sampler is None:
                continue
            out.append(sampler)
            todo.extend(getattr(sampler, "samplers", {}).values())
        return out

    def _grippers(self) -> list[Any]:
        grippers = []
        for robot in self._env.robots:
            g = robot.gripper  # 1.4: the gripper; 1.5: arm name -> gripper
            grippers.extend(g.values() if isinstance(g, dict) else [g])
        return [g for g in grippers if hasattr(g, "current_action")]

    def _image(self, camera: str) -> np.ndarray:
        from robosuite import macros

        img = np.array(self._raw[f"{self.cameras[camera]}_image"], dtype=np.uint8)
        # keep OpenGL row order even if someone switched the process to OpenCV's
        return img[::-1] if macros.IMAGE_CONVENTION == "opencv" else img

    def _obs(self) -> dict[str, Any]:
        return {
            "images": {cam: self._image(cam) for cam in self.cameras},
            "state": robosuite_state.raw_state(self._raw),
            "instruction": self.instruction,
        }
