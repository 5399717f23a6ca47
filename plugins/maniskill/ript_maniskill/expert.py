"""Scripted experts of our own, on privileged state, in ``pd_ee_delta_pose``.

ManiSkill ships motion-planning solutions for these tasks, but they need
``mplib==0.1.1``, which segfaults under numpy 2 (ript-core's numpy); these
experts only read the simulator's poses and steer the TCP with the same 7-d
delta-pose actions the policy outputs, so demos and policy share one action
space and no extra dependency.

Every expert is *stateless*: the action is a function of the current sim
state (TCP pose, finger opening, object poses, "is grasping"), so it can take
over at any step and needs no reset hook. Each moves the TCP towards a
waypoint chosen by the phase the state implies, with the gripper pointing
down and its fingers square to the cube.

Action layout (``ManiSkillEnv`` / ManiSkill's ``pd_ee_delta_pose`` for the
Panda): ``[dx, dy, dz]`` TCP translation and ``[rx, ry, rz]`` axis-angle
rotation, both in the world-aligned robot-base frame and normalised so that
``1.0`` means 0.1 m / 0.1 rad per control step (20 Hz), and the gripper,
``+1`` open (0.04 m per finger) to ``-1`` closed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

POS_SCALE = 0.1  # metres per unit action (the controller's pos_lower/upper)
ROT_SCALE = 0.1  # radians per unit action (rot_lower/upper)
MAX_STEP = 0.4  # at most 4 cm per step: the IK controller tracks it without overshoot
OPEN, CLOSE = 1.0, -1.0
CUBE_HALF = 0.02  # all four tasks use 2 cm half-size cubes (Panda configs of mani-skill 3.0.1)
FINGER_OPEN = 0.039  # one finger's joint position when fully open is 0.04

Expert = Callable[..., np.ndarray]


def _t(x: Any) -> np.ndarray:
    """First row of a batched torch tensor as float64 numpy."""
    return np.asarray(x.cpu().numpy(), dtype=np.float64)[0]


def _tcp(env: Any) -> tuple[np.ndarray, Rotation]:
    raw = _t(env.agent.tcp.pose.raw_pose)
    return raw[:3], Rotation.from_quat(raw[3:], scalar_first=True)


def _yaw(rot: Rotation, axis: int) -> float:
    v = rot.as_matrix()[:, axis]
    return float(np.arctan2(v[1], v[0]))


def _down_rotation(yaw: float) -> Rotation:
    """Gripper pointing down (TCP z = world -z) with its x-axis at ``yaw``."""
    x = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    z = np.array([0.0, 0.0, -1.0])
    return Rotation.from_matrix(np.stack([x, np.cross(z, x), z], axis=1))


def _square_to(tcp_rot: Rotation, cube_quat_wxyz: np.ndarray) -> Rotation:
    """The downward grasp orientation whose fingers (TCP y-axis) close on two
    faces of a cube with this pose, of the four, the nearest to the current one."""
    cube_yaw = _yaw(Rotation.from_quat(cube_quat_wxyz, scalar_first=True), 0)
    tcp_yaw = _yaw(tcp_rot, 0)
    # a cube looks the same every quarter turn: wrap the difference into [-pi/4, pi/4)
    diff = (cube_yaw - tcp_yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4
    return _down_rotation(tcp_yaw + diff)


def _action(
    tcp_pos: np.ndarray,
    tcp_rot: Rotation,
    target_pos: np.ndarray,
    target_rot: Rotation,
    gripper: float,
    rng: np.random.Generator | None = None,
    noise: float = 0.0,
) -> np.ndarray:
    move = np.clip((target_pos - tcp_pos) / POS_SCALE, -MAX_STEP, MAX_STEP)
    if noise and rng is not None:
        move = move + rng.normal(0.0, noise * MAX_STEP, size=3)
    # Measured on mani-skill 3.0.1: a rotation action r turns the TCP by -r about
    # the world-aligned axes (rz = +0.5 lowers the yaw), hence the inverse here.
    turn = -(target_rot * tcp_rot.inv()).as_rotvec() / ROT_SCALE
    out = np.concatenate([np.clip(move, -1, 1), np.clip(turn, -1, 1), [gripper]])
    return out.astype(np.float32)


def _fingers(env: Any) -> float:
    return float(_t(env.agent.robot.get_qpos())[-2:].mean())


def _grasp_step(
    env: Any, cube: Any, rng: np.random.Generator | None, noise: float
) -> np.ndarray | None:
    """Approach and grasp ``cube``: the action, or None once it is grasped."""
    if bool(_t(env.agent.is_grasping(cube))):
        return None
    tcp_pos, tcp_rot = _tcp(env)
    pose = _t(cube.pose.raw_pose)
    cube_pos, target_rot = pose[:3], _square_to(tcp_rot, pose[3:])
    xy_err = float(np.linalg.norm(tcp_pos[:2] - cube_pos[:2]))
    yaw_err = float((target_rot * tcp_rot.inv()).magnitude())
    if xy_err < 0.006 and yaw_err < 0.08 and abs(tcp_pos[2] - cube_pos[2]) < 0.006:
        # at the grasp pose: hold still and close; fingers that closed on nothing reopen
        grip = OPEN if _fingers(env) < 0.002 else CLOSE
        return _action(tcp_pos, tcp_rot, cube_pos, target_rot, grip)
    # descend only once above the cube (height grows with the xy error), fingers open
    lift = np.clip((xy_err - 0.004) / 0.02, 0.0, 1.0) * 0.08
    target = cube_pos + np.array([0.0, 0.0, lift])
    if xy_err > 0.02:  # far away: keep at least the current height, do not sweep the table
        target[2] = max(target[2], min(tcp_pos[2], cube_pos[2] + 0.08))
    return _action(tcp_pos, tcp_rot, target, target_rot, OPEN, rng, noise)


def pick_cube(env: Any, rng: np.random.Generator | None = None, noise: float = 0.0) -> np.ndarray:
    """PickCube: grasp the cube, carry it to the goal and hold still there."""
    env = getattr(env, "task_env", env)
    step = _grasp_step(env, env.cube, rng, noise)
    if step is not None:
        return step
    tcp_pos, tcp_rot = _tcp(env)
    cube_pos = _t(env.cube.pose.p)
    goal = _t(env.goal_site.pose.p)
    # move the TCP so that the cube (not the TCP) lands on the goal
    target = goal + (tcp_pos - cube_pos)
    near = np.linalg.norm(goal - cube_pos) < 0.01
    return _action(tcp_pos, tcp_rot, target, tcp_rot, CLOSE, None if near else rng, noise)


def _slide(env: Any, direction: float, rng: np.random.Generator | None, noise: float) -> np.ndarray:
    """PushCube (``direction=+1``) / PullCube (``-1``): closed gripper set down
    on the far side of the cube from the goal, then slid towards the goal."""
    tcp_pos, tcp_rot = _tcp(env)
    cube = _t(env.obj.pose.p)
    goal = _t(env.goal_region.pose.p)
    level = rot = _down_rotation(_yaw(tcp_rot, 0))
    contact_x = cube[0] - direction * (CUBE_HALF + 0.012)  # fingertips just off the face
    behind = direction * (contact_x - tcp_pos[0]) >= -0.004
    aligned = abs(tcp_pos[1] - cube[1]) < 0.01 and tcp_pos[2] < 0.035
    if behind and aligned:
        # slide along x towards (and a little past) the goal centre, keeping y on the cube
        target = np.array([goal[0] + direction * 0.02, cube[1], 0.02])
        return _action(tcp_pos, rot, target, level, CLOSE, rng, noise)
    approach = np.array([contact_x - direction * 0.02, cube[1], 0.02])
    if not (behind and abs(tcp_pos[1] - cube[1]) < 0.015):
        approach[2] = 0.1  # go round the cube from above
    return _action(tcp_pos, rot, approach, level, CLOSE, rng, noise)


def push_cube(env: Any, rng: np.random.Generator | None = None, noise: float = 0.0) -> np.ndarray:
    return _slide(getattr(env, "task_env", env), +1.0, rng, noise)


def pull_cube(env: Any, rng: np.random.Generator | None = None, noise: float = 0.0) -> np.ndarray:
    return _slide(getattr(env, "task_env", env), -1.0, rng, noise)


def stack_cube(env: Any, rng: np.random.Generator | None = None, noise: float = 0.0) -> np.ndarray:
    """StackCube: grasp the red cube A, carry it above the green cube B, lower
    it onto B, let go and back off upwards."""
    env = getattr(env, "task_env", env)
    tcp_pos, tcp_rot = _tcp(env)
    a, b = _t(env.cubeA.pose.p), _t(env.cubeB.pose.p)
    on_top = b + np.array([0.0, 0.0, 2 * CUBE_HALF])
    grasped = bool(_t(env.agent.is_grasping(env.cubeA)))
    placed = np.linalg.norm(a[:2] - b[:2]) < 0.01 and abs(a[2] - on_top[2]) < 0.006
    if placed and (not grasped or np.linalg.norm(a - on_top) < 0.004):
        # release, and once open lift straight up (success needs A static and let go)
        up = tcp_pos + np.array([0.0, 0.0, 0.05 if _fingers(env) > 0.03 else 0.0])
        return _action(tcp_pos, tcp_rot, up, tcp_rot, OPEN)
    step = _grasp_step(env, env.cubeA, rng, noise)
    if step is not None:
        return step
    offset = tcp_pos - a  # keep the grasp offset: steer the cube, not the TCP
    xy_err = float(np.linalg.norm(a[:2] - b[:2]))
    carry = on_top + np.array([0.0, 0.0, 0.0 if xy_err < 0.006 else 0.05])
    # align A's faces with B's so that it sits flat
    pose_b = _t(env.cubeB.pose.raw_pose)
    target_rot = _square_to(tcp_rot, pose_b[3:])
    return _action(tcp_pos, tcp_rot, carry + offset, target_rot, CLOSE, rng, noise)


EXPERTS: dict[str, Expert] = {
    "PickCube": pick_cube,
    "PushCube": push_cube,
    "PullCube": pull_cube,
    "StackCube": stack_cube,
}
