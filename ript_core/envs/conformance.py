"""Does a backend keep ript-core's contract? Like gymnasium's
``utils.env_checker.check_env``, for a whole backend: its spec, its catalogue,
one real env, its adapters and its expert.

    from ript_core.envs import check_backend
    check_backend("mysim")                    # raises BackendCheckError listing every problem
    problems = check_backend(MySimSpec(), raise_errors=False)   # or get them as a list

``ript check-backend NAME`` runs the same check from the command line. What is
checked (``docs/writing-a-plugin.md`` explains each rule):

- the catalogue: tasks, unique names, an instruction each, ``n_init_states``
  and ``max_steps`` >= 1, a no-op action for settle steps;
- options: the defaults pass the spec's ``check_options``, an unknown option
  is refused with a ``ValueError`` that names it;
- reset: observations keep the contract (``validate_observation``),
  ``info["success"]`` is a bool, an init state out of range is refused, and the
  same ``(init state, seed)`` gives a bit-identical first observation whatever
  the env did before (other resets, steps, the global numpy RNG scrambled);
- steps: fixed actions give a bit-identical trajectory (observations, rewards,
  flags, success), every observation keeps the contract; neither
  reproducibility rule applies to a task whose catalogue entry says
  ``exact_reset=False`` (a scene an operator sets up by hand);
- adapters: the observation adapter gives a ``PolicyInput`` of HxWx3 uint8
  images, a 1-D float state and the prompt; the action adapter maps a
  policy-width chunk to env actions inside the env's action space;
- an env that skips unread renders (``skip_next_observation``): skipping
  changes nothing but the images of the skipped steps;
- the scripted expert, if offered: callable as ``expert(env, rng, noise)``,
  returning an action of the action space's shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ript_core.envs.catalogue import TaskInfo
from ript_core.envs.spec import BackendSpec, ExpertSignatureError, check_expert
from ript_core.envs.validation import ObservationError, validate_observation
from ript_core.policy_input import PolicyInput

if TYPE_CHECKING:
    import gymnasium as gym

#: the action width a PI0 policy emits before the adapter slices it (its padded action dims)
POLICY_ACTION_DIM = 32
_NO_SUCH_OPTION = "no_such_option_ript_check"


class BackendCheckError(AssertionError):
    """A backend breaks the contract; ``problems`` lists every broken rule."""

    def __init__(self, backend: str, problems: Sequence[str]) -> None:
        self.backend = backend
        self.problems = list(problems)
        lines = "".join(f"\n  - {p}" for p in self.problems)
        super().__init__(f"backend {backend!r} breaks the contract in {len(problems)} ways:{lines}")


def check_backend(
    backend: str | BackendSpec,
    task: str | None = None,
    options: Mapping[str, Any] | None = None,
    *,
    init_states: tuple[int, int] = (0, 1),
    seed: int = 0,
    n_steps: int = 4,
    policy_action_dim: int = POLICY_ACTION_DIM,
    env: gym.Env | None = None,
    raise_errors: bool = True,
) -> list[str]:
    """Check ``backend`` (an installed backend's name, or a spec) on one env of
    ``task`` (default: the catalogue's first) built with ``options``.

    ``init_states`` are the two registered init states the reset checks use;
    ``n_steps`` how many fixed actions each trajectory takes. ``env``: check
    this env of ``task`` (built with ``options``) instead of building one; it
    is left open. Returns the problems found (empty: conformant); with
    ``raise_errors`` (the default) raises :class:`BackendCheckError` instead
    when there is any.
    """
    spec = _spec(backend)
    problems = _Checker(spec, policy_action_dim).run(
        task, dict(options or {}), init_states, seed, n_steps, env
    )
    if problems and raise_errors:
        raise BackendCheckError(spec.name, problems)
    return problems


def _spec(backend: str | BackendSpec) -> BackendSpec:
    if isinstance(backend, BackendSpec):
        return backend
    from ript_core.plugins import get_registry  # lazily: the registry imports this package

    return get_registry().spec(backend)


def _same_obs(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    """Where two observations differ (bit for bit), or None."""
    if a["instruction"] != b["instruction"]:
        return f"instruction {a['instruction']!r} != {b['instruction']!r}"
    if not np.array_equal(a["state"], b["state"]):
        return f"state {a['state']} != {b['state']}"
    if a["images"].keys() != b["images"].keys():
        return f"cameras {sorted(a['images'])} != {sorted(b['images'])}"
    for cam in a["images"]:
        if not np.array_equal(a["images"][cam], b["images"][cam]):
            return f"image {cam!r}"
    return None


def _same_unread(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    """As :func:`_same_obs` for an observation whose images were not rendered:
    the images may hold older frames, but of the same cameras and shapes."""
    images = {cam: np.shape(img) for cam, img in a["images"].items()}
    same_shapes = images == {cam: np.shape(img) for cam, img in b["images"].items()}
    stripped = [{**obs, "images": {}} for obs in (a, b)]
    return _same_obs(*stripped) or (None if same_shapes else "the cameras or image shapes")


STEP_FIELDS = ("reward", "terminated", "truncated", "info")


def _same(a: Any, b: Any, what: str) -> str | None:
    """``what`` differs between two runs (arrays bit for bit), or None."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        if a.keys() != b.keys():
            return f"{what} keys {sorted(a)} != {sorted(b)}"
        return next(filter(None, (_same(a[k], b[k], f"{what}[{k!r}]") for k in a)), None)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return None if np.array_equal(a, b) else f"{what} {a} != {b}"
    return None if a == b else f"{what} {a!r} != {b!r}"


class _Checker:
    def __init__(self, spec: BackendSpec, policy_action_dim: int) -> None:
        self.spec = spec
        self.policy_action_dim = policy_action_dim
        self.problems: list[str] = []

    def fail(self, problem: str) -> None:
        self.problems.append(problem)

    def attempt(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``; an exception becomes a problem (and None)."""
        try:
            return fn(*args)
        except Exception as exc:
            self.fail(f"{what} raised {type(exc).__name__}: {exc}")
            return None

    def run(self, task, options, init_states, seed, n_steps, given_env) -> list[str]:
        spec = self.spec
        if not spec.name or not spec.name.isidentifier() or spec.name != spec.name.lower():
            self.fail(f"name {spec.name!r} is not a lowercase identifier")
        avail = self.attempt("availability()", spec.availability)
        if avail is not None and not avail.available:
            self.fail(f"not available here: {avail.reason} (fix: {avail.install})")
            return self.problems  # nothing else can be checked without the simulator
        tasks = self.check_catalogue()
        checked = self.check_options(options)
        if not tasks or checked is None:
            return self.problems
        info = tasks.get(task or next(iter(tasks)))
        if info is None:
            self.fail(f"task {task!r} is not in the catalogue ({', '.join(tasks)})")
            return self.problems
        if max(init_states) >= info.n_init_states:
            init_states = (0, min(1, info.n_init_states - 1))
        env = given_env
        if env is None:
            env = self.attempt(
                f"make_env({info.name!r}, {checked})", spec.make_env, info.name, checked
            )
        if env is None:
            return self.problems
        first = init_states[0]
        try:
            self.attempt("the env checks", self.check_env, env, info, init_states, seed, n_steps)
            self.attempt("the adapter checks", self.check_adapters, env, info, checked, first, seed)
            self.attempt("the expert checks", self.check_expert, env, info, first, seed)
        finally:
            if given_env is None:
                self.attempt("env.close()", env.close)
        return list(dict.fromkeys(self.problems))  # one line per problem, however often seen

    # -- the spec -----------------------------------------------------------------
    def check_catalogue(self) -> dict[str, TaskInfo]:
        tasks = self.attempt("catalogue()", self.spec.catalogue)
        if tasks is None:
            return {}
        tasks = list(tasks)
        if not tasks:
            self.fail("the catalogue is empty")
        by_name: dict[str, TaskInfo] = {}
        for t in tasks:
            if not isinstance(t, TaskInfo):
                self.fail(f"catalogue entry {t!r} is not a TaskInfo")
                continue
            if t.name in by_name:
                self.fail(f"task name {t.name!r} appears twice in the catalogue")
            by_name[t.name] = t
            if not isinstance(t.instruction, str) or not t.instruction.strip():
                self.fail(f"task {t.name!r} has no instruction")
            if t.n_init_states < 1 or t.max_steps < 1:
                self.fail(f"task {t.name!r}: n_init_states and max_steps must be >= 1")
            if t.settle_steps < 0 or (t.settle_steps and t.noop_action is None):
                self.fail(f"task {t.name!r}: settle_steps need a no-op action")
        return by_name

    def check_options(self, options: dict[str, Any]) -> dict[str, Any] | None:
        try:
            self.spec.check_options({_NO_SUCH_OPTION: 1})
        except ValueError as exc:
            if _NO_SUCH_OPTION not in str(exc):
                self.fail(f"the error for an unknown option does not name it: {exc}")
        except Exception as exc:
            self.fail(f"an unknown option raised {type(exc).__name__}, not ValueError: {exc}")
        else:
            self.fail(f"check_options accepted an unknown option {_NO_SUCH_OPTION!r}")
        return self.attempt(f"check_options({options})", self.spec.check_options, options)

    # -- one env ------------------------------------------------------------------
    def observe(self, where: str, obs: Any, info: Any) -> None:
        try:
            validate_observation(obs, self.spec.name)
        except ObservationError as exc:
            self.fail(f"{where}: {exc}")
        if not isinstance(info, Mapping) or not isinstance(info.get("success"), bool | np.bool_):
            got = info.get("success") if isinstance(info, Mapping) else info
            self.fail(f"{where}: info['success'] must be a bool, got {got!r}")

    def trajectory(self, env, init_state: int, seed: int, actions: np.ndarray) -> list[tuple]:
        """``[(obs, reward, terminated, truncated, info)]`` from the reset on."""
        obs, info = env.reset(seed=seed, options={"init_state": init_state})
        where = f"reset(init_state={init_state}, seed={seed})"
        self.observe(where, obs, info)
        steps = [(obs, 0.0, False, False, info)]
        for k, action in enumerate(actions):
            obs, reward, terminated, truncated, info = env.step(action.copy())
            self.observe(f"step {k + 1} after {where}", obs, info)
            steps.append((obs, reward, terminated, truncated, info))
            if terminated or truncated:
                break
        return steps

    def check_env(self, env, info: TaskInfo, init_states, seed, n_steps) -> None:
        import gymnasium as gym

        if not isinstance(env, gym.Env):
            self.fail(f"make_env returned {type(env).__name__}, not a gymnasium.Env")
        space = getattr(env, "action_space", None)
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            self.fail(f"the action space must be a 1-D gymnasium Box, got {space!r}")
            return
        first, other = init_states
        known = len(self.problems)
        actions = self.actions(space, n_steps)
        a = self.attempt("the first trajectory", self.trajectory, env, first, seed, actions)
        if a is None:
            return
        rng_state = np.random.get_state()
        try:  # another history: the same init state under another seed, another init
            # state, steps after each, and the global numpy RNG moved
            for i, s in ((first, seed + 1), (other, seed)):
                self.attempt("another trajectory", self.trajectory, env, i, s, actions)
            np.random.seed(12345)
            np.random.random(17)
            b = self.attempt("the repeated trajectory", self.trajectory, env, first, seed, actions)
        finally:
            np.random.set_state(rng_state)
        if b is None or len(self.problems) > known:
            return  # observations that break the contract are not compared
        where = f"init_state={first}, seed={seed} after another history"
        diff = _same_obs(a[0][0], b[0][0]) or _same(a[0][4], b[0][4], "info")
        if not info.exact_reset:
            pass  # an operator's scene set-up: nothing to compare bit for bit
        elif diff is not None:
            self.fail(
                f"reset is not reproducible: the first observation of {where} differs ({diff})"
            )
        elif len(a) != len(b):
            self.fail(f"fixed actions end after {len(a) - 1} steps, then {len(b) - 1} ({where})")
        else:
            for k, (sa, sb) in enumerate(zip(a[1:], b[1:], strict=True), start=1):
                diff = _same_obs(sa[0], sb[0]) or next(
                    filter(None, map(_same, sa[1:], sb[1:], STEP_FIELDS)), None
                )
                if diff is not None:
                    self.fail(
                        f"fixed actions do not give the same trajectory: step {k} of {where} "
                        f"differs ({diff})"
                    )
                    break
            else:
                self.check_unread(env, first, seed, actions, a)
        try:
            env.reset(seed=seed, options={"init_state": info.n_init_states})
        except ValueError:
            pass
        except Exception as exc:
            self.fail(
                f"an init state out of range raised {type(exc).__name__}, not ValueError: {exc}"
            )
        else:
            self.fail(
                f"reset accepted init_state={info.n_init_states} (the catalogue registers "
                f"{info.n_init_states}: 0 to {info.n_init_states - 1})"
            )

    def check_unread(self, env, init_state: int, seed: int, actions, rendered) -> None:
        """An env that may skip unread renders (``ript_core.envs.unread``):
        ``rendered``'s actions again with all but every third observation (and
        the last) skipped give the same states, rewards, flags and info at every
        step and the same images wherever the observation is read."""
        from ript_core.envs.unread import skip_next_observation, skips_observations

        if not skips_observations(env):
            return
        env.reset(seed=seed, options={"init_state": init_state})
        last = len(rendered) - 1
        for k, action in enumerate(actions[:last], start=1):
            read = k % 3 == 0 or k == last
            if not read:
                skip_next_observation(env)
            obs, *step = env.step(action.copy())
            ref = rendered[k]
            diff = (_same_obs(obs, ref[0]) if read else _same_unread(obs, ref[0])) or next(
                filter(None, map(_same, step, ref[1:], STEP_FIELDS)), None
            )
            if diff is not None:
                kind = "read" if read else "skipped"
                self.fail(
                    f"skip_next_observation changes more than unread images: step {k} "
                    f"({kind}) of init_state={init_state}, seed={seed} differs from the "
                    f"same step without skipping ({diff})"
                )
                return

    @staticmethod
    def actions(space, n_steps: int) -> np.ndarray:
        low = np.where(np.isfinite(space.low), space.low, -1.0)
        high = np.where(np.isfinite(space.high), space.high, 1.0)
        rng = np.random.default_rng(0)
        return rng.uniform(low, high, (n_steps, *space.shape)).astype(space.dtype)

    # -- adapters and expert ----------------------------------------------------------
    def check_adapters(self, env, info: TaskInfo, options, init_state: int, seed: int) -> None:
        adapters = self.attempt(
            f"default_adapters({info.name!r}, {options})",
            self.spec.default_adapters,
            info.name,
            options,
        )
        if adapters is None:
            return
        try:
            obs_adapter, act_adapter = adapters
        except (TypeError, ValueError):
            self.fail(
                "default_adapters must return (observation_adapter, action_adapter), "
                f"got {adapters!r}"
            )
            return
        obs, _ = env.reset(seed=seed, options={"init_state": init_state})
        x = self.attempt("the observation adapter", obs_adapter, obs)
        if x is not None:
            self.check_policy_input(x, info)
        chunk = np.random.default_rng(1).normal(0.0, 2.0, (3, self.policy_action_dim))
        actions = self.attempt(
            f"the action adapter on a [3, {self.policy_action_dim}] chunk", act_adapter, chunk
        )
        if actions is None:
            return
        actions = np.asarray(actions)
        space = env.action_space
        if actions.shape != (3, *space.shape):
            self.fail(
                f"the action adapter maps a [3, {self.policy_action_dim}] chunk to shape "
                f"{actions.shape}, not {(3, *space.shape)}"
            )
            return
        for row in actions:
            if not space.contains(row.astype(space.dtype)):
                self.fail(f"the action adapter gives {row}, outside the env's action space {space}")
                return
        self.attempt("env.step(an adapted action)", env.step, actions[0])

    def check_policy_input(self, x: Any, info: TaskInfo) -> None:
        if not isinstance(x, PolicyInput):
            self.fail(f"the observation adapter returned {type(x).__name__}, not a PolicyInput")
            return
        if not x.images:
            self.fail("the observation adapter gives no images")
        for slot, img in x.images.items():
            if (
                not isinstance(img, np.ndarray)
                or img.ndim != 3
                or img.shape[-1] != 3
                or img.dtype != np.uint8
            ):
                self.fail(f"the observation adapter's image {slot!r} is not an HxWx3 uint8 array")
        state = x.state
        if (
            not isinstance(state, np.ndarray)
            or state.ndim != 1
            or not np.issubdtype(state.dtype, np.floating)
        ):
            self.fail(f"the observation adapter's state is not a 1-D float array: {state!r}")
        if not isinstance(x.prompt, str) or not x.prompt:
            self.fail(f"the observation adapter's prompt is {x.prompt!r}, not the instruction")

    def check_expert(self, env, info: TaskInfo, init_state: int, seed: int) -> None:
        expert = self.attempt(
            f"scripted_expert({info.name!r})", self.spec.scripted_expert, info.name
        )
        if expert is None:
            return
        try:
            check_expert(self.spec.name, info.name, expert)
        except ExpertSignatureError as exc:
            self.fail(str(exc))
            return
        env.reset(seed=seed, options={"init_state": init_state})
        action = self.attempt(
            "the scripted expert", expert, env.unwrapped, np.random.default_rng(0), 0.0
        )
        if action is None:
            return
        action = np.asarray(action)
        if action.shape != env.action_space.shape or not np.all(np.isfinite(action)):
            self.fail(
                f"the scripted expert returned {action!r}, not a finite action of shape "
                f"{env.action_space.shape}"
            )
