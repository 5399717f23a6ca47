"""The machine a run uses, and the part of its memory and cores a plan may fill.

:func:`detect_machine` reads this machine (CUDA device 0, the affinity mask,
``/proc/meminfo`` capped by a cgroup limit); :class:`MachineSpec` describes
any other, so plans can be made for machines one does not have.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

import attrs

from ript_core.plan.units import GB

#: Fraction of device memory never planned for (fragmentation, estimate error).
MARGIN_FRACTION = 0.10
#: Fixed allowance on a GPU, outside the fraction: the CUDA context (not seen
#: by ``torch.cuda.max_memory_allocated``), cuBLAS/cuDNN workspaces and
#: allocator slack.
CUDA_FIXED_ALLOWANCE = int(1.5 * GB)
#: Fixed allowance of CPU RAM for the OS and the main process's own interpreter,
#: torch and libraries (the model and its batches are counted separately).
HOST_FIXED_ALLOWANCE = 2 * GB


@attrs.frozen
class MachineSpec:
    """The machine the run will use. ``device="cpu"``: the model lives in CPU RAM.

    ``device_total_bytes``/``device_free_bytes`` describe the accelerator (for
    ``cpu`` they equal the CPU RAM numbers: model and env workers then share
    one pool, and the planner charges both to it). ``cpu_ram_free_bytes``
    defaults to the total when unknown.
    """

    device: Literal["cpu", "cuda"]
    device_total_bytes: int
    device_free_bytes: int
    cpu_ram_bytes: int
    cpu_cores: int
    cpu_ram_free_bytes: int | None = None
    name: str = ""

    @classmethod
    def cpu_only(cls, ram_bytes: int, cores: int, *, free_bytes: int | None = None) -> MachineSpec:
        """A machine without GPU: the policy, its batches and the envs share the RAM."""
        free = ram_bytes if free_bytes is None else free_bytes
        return cls("cpu", ram_bytes, free, ram_bytes, cores, free, name="cpu")

    @classmethod
    def gpu(
        cls,
        device_bytes: int,
        cores: int,
        cpu_ram_bytes: int,
        *,
        device_free_bytes: int | None = None,
    ) -> MachineSpec:
        """A machine with one CUDA device (the main process uses one device)."""
        free = device_bytes if device_free_bytes is None else device_free_bytes
        return cls("cuda", device_bytes, free, cpu_ram_bytes, cores, name="cuda")

    @property
    def host_free_bytes(self) -> int:
        return self.cpu_ram_bytes if self.cpu_ram_free_bytes is None else self.cpu_ram_free_bytes


def fixed_allowance(machine: MachineSpec) -> int:
    """The fixed bytes never planned for on the machine's device."""
    return CUDA_FIXED_ALLOWANCE if machine.device == "cuda" else HOST_FIXED_ALLOWANCE


def usable_device_bytes(machine: MachineSpec) -> int:
    """Device bytes the plan may fill: min(90 % of total, free) − fixed allowance."""
    cap = min(int(machine.device_total_bytes * (1 - MARGIN_FRACTION)), machine.device_free_bytes)
    return max(cap - fixed_allowance(machine), 0)


def usable_host_bytes(machine: MachineSpec) -> int:
    """CPU RAM for env workers on a GPU machine (same margin rule as the device)."""
    cap = min(int(machine.cpu_ram_bytes * (1 - MARGIN_FRACTION)), machine.host_free_bytes)
    return max(cap - HOST_FIXED_ALLOWANCE, 0)


def needed_device_total(machine: MachineSpec, peak: int) -> int:
    """The device size whose usable bytes hold ``peak`` (inverse of the margin rule)."""
    return math.ceil((peak + fixed_allowance(machine)) / (1 - MARGIN_FRACTION))


def core_limit(cores: int, cores_per_env: float = 1.0) -> int:
    """Env workers the cores can keep busy: one core stays with the main
    process (batched inference, IPC) when there are more than two."""
    spare = cores - 1 if cores > 2 else cores
    return max(int(spare // cores_per_env), 1)


# ============================================================================
# the real machine
# ============================================================================


def _meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                out[key] = int(parts[0]) * 1024  # kB
    except OSError:
        pass
    return out


def _cgroup_limit() -> int | None:
    """A container's memory limit (cgroup v2, then v1), None when unlimited."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
    return None


def detect_machine() -> MachineSpec:
    """This machine: CUDA device 0's total/free memory if there is one, the
    usable cores (affinity mask) and RAM from /proc/meminfo (capped by a
    cgroup limit) — no psutil needed."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    info = _meminfo()
    total = info.get("MemTotal", 0)
    free = info.get("MemAvailable", total)
    limit = _cgroup_limit()
    if limit is not None:
        total, free = min(total, limit) if total else limit, min(free, limit) if free else limit
    if not total:
        raise RuntimeError("cannot read the RAM size from /proc/meminfo: pass it explicitly")
    import torch

    if torch.cuda.is_available():
        dev_free, dev_total = torch.cuda.mem_get_info()
        # what this process's torch already holds is the policy (a plan counts
        # its weights itself) or allocator cache (reusable): counted as used,
        # the trainer -- which plans after loading the policy -- would charge
        # the weights twice
        dev_free += torch.cuda.memory_reserved()
        return MachineSpec(
            "cuda",
            int(dev_total),
            int(min(dev_free, dev_total)),
            total,
            cores,
            free,
            name=torch.cuda.get_device_name(),
        )
    return MachineSpec("cpu", total, free, total, cores, free, name="cpu")
