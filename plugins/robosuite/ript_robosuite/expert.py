"""Scripted experts of our own, on privileged state, in OSC_POSE delta actions.

They read robosuite's object observables (``cube_pos``, ``cubeA_quat``,
``handle_pos``, ...) and its grasp check, and steer the end effector with the
same 7-d actions the policy outputs, so demos and policy share one action
space. Every expert is *stateless*: the action is a function of the current
sim state (eef pose, finger opening, object poses, "is grasping"), so it can
take over at any step and needs no reset hook.

Action layout (see ``ript_robosuite.adapters``): ``[dx, dy, dz]`` eef
translation in the world frame, 1.0 = 5 cm per control step; ``[rx, ry,
rz]`` world-frame axis-angle rotation, 1.0 = 0.5 rad; gripper ``-1`` open,
``+1`` close.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

POS_SCALE = 0.05  # metres per unit action (OSC_POSE output_max)
ROT_SCALE = 0.5  # radians per unit action
MAX_STEP = 0.6  # at most 3 cm per step: OSC tracks it without overshoot
# OSC's delta goal is relative to where the eef is, and under load (a finger
# on a cube, gravity) it stops short of a small goal: ask for twice the error
GAIN = 2.0
OPEN, CLOSE = -1.0, 1.0
STACK_HEIGHT = 0.02 + 0.025  # cube A's centre over cube B's when stacked (half sizes)
FINGERS_SHUT = 0.004
# Door: the grasp point in the latch body's frame, on the lever 4 cm from its
# tip (robosuite's door_lock.xml: the lever spans x 0..0.15 at y -0.10), and
# the lever turn (rad) past which the latch clears the frame
LEVER_GRASP = np.array([0.11, -0.115, 0.0])
LATCH_OPEN = 1.2
LATCH_HOLD = 1.45
CARRY_HEIGHT = 1.02  # the can's centre while it travels: clear of the bins' walls
NUT_CARRY_HEIGHT = 0.99  # the nut's centre while it travels: clear of the pegs
PEG_TOP = 0.95  # robosuite's pegs_arena.xml: pegs at z 0.85, 0.1 half height  # pressed towards while the door swings  # finger opening (m) below which the gripper closed on nothing

Expert = Callable[..., np.ndarray]


def _rs(env: Any) -> Any:
    return getattr(env, "robosuite_env", env)


def _obs(env: Any) -> dict[str, Any]:
    return env.raw_observation


def _gripper(rs: Any) -> Any:
    g = rs.robots[0].gripper  # 1.4: the gripper; 1.5: arm name -> gripper
    return next(iter(g.values())) if isinstance(g, dict) else g


def _grasping(rs: Any, obj: Any) -> bool:
    return bool(rs._check_grasp(gripper=_gripper(rs), object_geoms=obj))


def _opening(obs: dict[str, Any]) -> float:
    q = obs["robot0_gripper_qpos"]
    return float(q[0] - q[1])


def _yaw_of(quat_xyzw: np.ndarray, axis: int = 0) -> float:
    x, y, z, w = (float(v) for v in quat_xyzw)
    # column `axis` of the rotation matrix, projected on the table
    cols = {
        0: (1 - 2 * (y * y + z * z), 2 * (x * y + z * w)),
        1: (2 * (x * y - z * w), 1 - 2 * (x * x + z * z)),
    }
    cx, cy = cols[axis]
    return float(np.arctan2(cy, cx))


def _wrap(angle: float, period: float) -> float:
    """``angle`` wrapped into ``[-period/2, period/2)``."""
    return (angle + period / 2) % period - period / 2


def _action(
    obs: dict[str, Any],
    target: np.ndarray,
    gripper: float,
    yaw_error: float = 0.0,
    rng: np.random.Generator | None = None,
    noise: float = 0.0,
) -> np.ndarray:
    move = GAIN * (target - obs["robot0_eef_pos"]) / POS_SCALE
    move *= min(1.0, MAX_STEP / max(float(np.abs(move).max()), 1e-9))  # keep the direction
    if noise and rng is not None:
        move = move + rng.normal(0.0, noise * MAX_STEP, size=3)
    turn = np.array([0.0, 0.0, np.clip(yaw_error / ROT_SCALE, -0.5, 0.5)])
    return np.concatenate([np.clip(move, -1, 1), turn, [gripper]]).astype(np.float32)


def _cube_yaw_error(obs: dict[str, Any], cube_quat: np.ndarray, along: float | None) -> float:
    """Yaw that squares the fingers to a cube's faces (a cube repeats every
    quarter turn). The fingers close along the eef's y axis; ``along``: a
    table direction (radians) to keep the fingers out of (a neighbouring
    cube), i.e. the eef's x axis is turned to the cube face nearest to it."""
    eef_yaw = _yaw_of(obs["robot0_eef_quat"])
    cube_yaw = _yaw_of(cube_quat)
    if along is None:
        return _wrap(cube_yaw - eef_yaw, np.pi / 2)
    face = along + _wrap(cube_yaw - along, np.pi / 2)
    return _wrap(face - eef_yaw, np.pi)


def _grasp_step(
    rs: Any,
    obs: dict[str, Any],
    cube: Any,
    pos: np.ndarray,
    quat: np.ndarray,
    rng: np.random.Generator | None,
    noise: float,
    along: float | None = None,
    hover_span: float = 0.02,
    reach_z: float = 0.01,
) -> np.ndarray | None:
    """Approach and grasp a cube: the action, or None once it is grasped.
    The eef descends as its xy error falls below ``0.005 + hover_span`` and
    closes within ``reach_z`` above ``pos``."""
    if _grasping(rs, cube):
        return None
    eef = obs["robot0_eef_pos"]
    yaw_err = _cube_yaw_error(obs, quat, along)
    xy_err = float(np.linalg.norm(eef[:2] - pos[:2]))
    if xy_err < 0.008 and abs(yaw_err) < 0.1 and eef[2] - pos[2] < reach_z:
        # at the grasp pose: hold still and close; fingers that closed on nothing reopen
        grip = OPEN if _opening(obs) < FINGERS_SHUT else CLOSE
        return _action(obs, pos, grip, yaw_err)
    # descend only once above the cube (height grows with the xy error), fingers open
    hover = np.clip((xy_err - 0.005) / hover_span, 0.0, 1.0) * 0.08
    target = pos + np.array([0.0, 0.0, hover])
    return _action(obs, target, OPEN, yaw_err, rng, noise)


def lift(env: Any, rng: np.random.Generator | None = None, noise: float = 0.0) -> np.ndarray:
    """Lift: grasp the cube and raise it 15 cm."""
    rs, obs = _rs(env), _obs(env)
    pos, quat = obs["cube_pos"], obs["cube_quat"]
    step = _grasp_step(rs, obs, rs.cube, pos, quat, rng, noise)
    if step is not None:
        return step
    return _action(obs, obs["robot0_eef_pos"] + [0.0, 0.0, 0.05], CLOSE, 0.0, rng, noise)


def stack(env: Any, rng: np.random.Generator | None = None, noise: float = 0.0) -> np.ndarray:
    """Stack: grasp the red cube A, carry it above the green cube B, lower it
    onto B, let go and back off upwards (success needs A released on B)."""
    rs, obs = _rs(env), _obs(env)
    a, b = obs["cubeA_pos"], obs["cubeB_pos"]
    eef = obs["robot0_eef_pos"]
    on_top = b + np.array([0.0, 0.0, STACK_HEIGHT])
    placed = np.linalg.norm(a[:2] - b[:2]) < 0.012 and abs(a[2] - on_top[2]) < 0.008
    if placed:
        # release, and once open lift straight up
        up = eef + np.array([0.0, 0.0, 0.05 if _opening(obs) > 0.06 else 0.0])
        return _action(obs, up, OPEN)
    towards_b = float(np.arctan2(b[1] - a[1], b[0] - a[0]))
    step = _grasp_step(rs, obs, rs.cubeA, a, obs["cubeA_quat"], rng, noise, along=towards_b)
    if step is not None:
        return step
    offset = eef - a  # keep the grasp offset: steer the cube, not the eef
    xy_err = float(np.linalg.norm(a[:2] - b[:2]))
    carry = on_top + np.array([0.0, 0.0, 0.0 if xy_err < 0.006 else 0.05])
    yaw_err = _wrap(_yaw_of(obs["cubeB_quat"]) - _yaw_of(obs["cubeA_quat"]), np.pi / 2)
    return _action(obs, carry + offset, CLOSE, yaw_err, rng, noise)


def _rotate_about(point: np.ndarray, anchor: np.ndarray, axis: np.ndarray, angle: float):
    """``point`` turned by ``angle`` about the line through ``anchor`` along ``axis`` (Rodrigues)."""
    k = axis / np.linalg.norm(axis)
    v = point - anchor
    c, s = np.cos(angle), np.sin(angle)
    return anchor + v * c + np.cross(k, v) * s + k * np.dot(k, v) * (1 - c)


def _joint(rs: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A hinge joint's world anchor and axis."""
    jid = rs.sim.model.joint_name2id(name)
    return np.array(rs.sim.data.xanchor[jid]), np.array(rs.sim.data.xaxis[jid])


def door(env: Any, rng: np.random.Generator | None = None, noise: float = 0.0) -> np.ndarray:
    """Door: grasp the lever 4 cm from its tip (fingers closing along the door's
    normal), turn it down past :data:`LATCH_OPEN` rad, then pull the grasp
    point along the hinge's arc. The eef keeps its orientation; the lever
    turns between the finger pads."""
    rs, obs = _rs(env), _obs(env)
    eef = obs["robot0_eef_pos"]
    hinge_anchor, hinge_axis = _joint(rs, rs.door.joints[0])
    latch_anchor, latch_axis = _joint(rs, rs.door.joints[1])
    latch = rs.object_body_ids["latch"]
    latch_rot = np.array(rs.sim.data.body_xmat[latch]).reshape(3, 3)
    grasp = np.array(rs.sim.data.body_xpos[latch]) + latch_rot @ LEVER_GRASP
    # the eef's x axis along the door panel (the fingers along its normal)
    panel = latch_anchor - hinge_anchor
    yaw_err = _wrap(float(np.arctan2(panel[1], panel[0])) - _yaw_of(obs["robot0_eef_quat"]), np.pi)
    # robosuite's grasp check wants both finger pads on the lever; they close
    # on its front and back faces instead: held = fingers stopped by the lever
    held = float(np.linalg.norm(eef - grasp)) < 0.035 and 0.01 < _opening(obs) < 0.05
    if not held:
        xy_err = float(np.linalg.norm(eef[:2] - grasp[:2]))
        if xy_err < 0.01 and abs(eef[2] - grasp[2]) < 0.01 and abs(yaw_err) < 0.1:
            grip = OPEN if _opening(obs) < FINGERS_SHUT else CLOSE
            return _action(obs, grasp, grip, yaw_err)
        hover = np.clip((xy_err - 0.008) / 0.02, 0.0, 1.0) * 0.06
        return _action(obs, grasp + [0.0, 0.0, hover], OPEN, yaw_err, rng, noise)
    # turn the lever's tip down (the sign of the turn that lowers the grasp
    # point) and keep it down while the door swings: the latch's bolt catches
    # on the frame post until the door is well open
    down = 1.0 if _rotate_about(eef, latch_anchor, latch_axis, 0.1)[2] < eef[2] else -1.0
    turn = 0.3 if abs(float(obs["handle_qpos"])) < LATCH_HOLD else 0.0
    target = _rotate_about(eef, latch_anchor, latch_axis, down * turn)
    if abs(float(obs["handle_qpos"])) > LATCH_OPEN or float(obs["hinge_qpos"]) > 0.02:
        # a positive turn about the hinge axis opens the door (hinge_qpos grows)
        target = _rotate_about(target, hinge_anchor, hinge_axis, 0.06)
    return _action(obs, target, CLOSE, yaw_err, rng, noise)


def pick_place_can(
    env: Any, rng: np.random.Generator | None = None, noise: float = 0.0
) -> np.ndarray:
    """PickPlaceCan: grasp the can from above, carry it high over the bins'
    walls to its compartment of the right bin, lower it in and let go."""
    rs, obs = _rs(env), _obs(env)
    can, eef = obs["Can_pos"], obs["robot0_eef_pos"]
    target_id = rs.object_to_id["can"]
    if not rs.not_in_bin(can, target_id):  # robosuite's own "in its compartment" test
        up = eef + np.array([0.0, 0.0, 0.05 if _opening(obs) > 0.06 else 0.0])
        return _action(obs, up, OPEN)
    # a can is round: keep the eef's yaw (quaternion of the eef itself)
    # a can leaves the fingers less room than a cube: descend only once well centred
    # (and close ~1.5 cm above its centre: the finger tips meet the bin's floor)
    can_geoms = rs.objects[target_id]
    quat = obs["robot0_eef_quat"]
    step = _grasp_step(rs, obs, can_geoms, can, quat, rng, noise, hover_span=0.005, reach_z=0.015)
    if step is not None:
        return step
    goal = np.array(rs.target_bin_placements[target_id])
    xy_err = float(np.linalg.norm(can[:2] - goal[:2]))
    # the compartment is ~20 x 25 cm: lower the can once within 6 cm of its
    # centre (the arm is near its reach there and stops a little short)
    height = CARRY_HEIGHT if xy_err > 0.06 else goal[2] + 0.07
    if xy_err > 0.1 and can[2] < CARRY_HEIGHT - 0.05:  # lift before travelling
        return _action(obs, eef + [0.0, 0.0, 0.05], CLOSE, 0.0, rng, noise)
    target = np.array([goal[0], goal[1], height]) + (eef - can)
    return _action(obs, target, CLOSE, 0.0, rng, noise)


def _site(rs: Any, name: str) -> np.ndarray:
    return np.array(rs.sim.data.site_xpos[rs.sim.model.site_name2id(name)])


def nut_assembly_square(
    env: Any, rng: np.random.Generator | None = None, noise: float = 0.0
) -> np.ndarray:
    """NutAssemblySquare: grasp the square nut by its handle (fingers across
    the bar), carry it so that its ring's centre is above the square peg,
    turn it square to the peg and lower it down the peg."""
    rs, obs = _rs(env), _obs(env)
    eef = obs["robot0_eef_pos"]
    nut = rs.nuts[rs.nut_to_id["square"]]
    handle = _site(rs, nut.important_sites["handle"])
    centre = _site(rs, nut.naming_prefix + "center_site")
    peg = np.array(rs.sim.data.body_xpos[rs.peg1_body_id])
    nut_yaw = _yaw_of(obs["SquareNut_quat"])
    xy_err = float(np.linalg.norm(centre[:2] - peg[:2]))
    if xy_err < 0.012 and centre[2] < PEG_TOP:
        # the ring is round the peg: let go (held by its handle it tilts and
        # jams), it slides down on its own; then back off upwards
        up = eef + np.array([0.0, 0.0, 0.05 if _opening(obs) > 0.06 else 0.0])
        return _action(obs, up, OPEN)
    if not _grasping(rs, nut):
        # the eef's x axis along the handle bar (the nut's x axis)
        yaw_err = _wrap(nut_yaw - _yaw_of(obs["robot0_eef_quat"]), np.pi)
        xy_err = float(np.linalg.norm(eef[:2] - handle[:2]))
        if xy_err < 0.006 and abs(yaw_err) < 0.1 and eef[2] - handle[2] < 0.01:
            grip = OPEN if _opening(obs) < FINGERS_SHUT else CLOSE
            return _action(obs, handle, grip, yaw_err)
        hover = np.clip((xy_err - 0.005) / 0.01, 0.0, 1.0) * 0.08
        return _action(obs, handle + [0.0, 0.0, hover], OPEN, yaw_err, rng, noise)
    # the ring's hole is square: turn it square to the peg (a quarter turn repeats)
    yaw_err = _wrap(-nut_yaw, np.pi / 2)
    above = centre[2] > NUT_CARRY_HEIGHT - 0.02
    if xy_err > 0.006 and not above and xy_err > 0.02:  # lift clear of the peg first
        return _action(obs, eef + [0.0, 0.0, 0.05], CLOSE, yaw_err, rng, noise)
    height = NUT_CARRY_HEIGHT if xy_err > 0.006 else peg[2] - 0.1  # down to the table
    target = np.array([peg[0], peg[1], height]) + (eef - centre)
    return _action(obs, target, CLOSE, yaw_err, rng if xy_err > 0.02 else None, noise)


EXPERTS: dict[str, Expert] = {
    "Lift": lift,
    "Stack": stack,
    "Door": door,
    "PickPlaceCan": pick_place_can,
    "NutAssemblySquare": nut_assembly_square,
}
