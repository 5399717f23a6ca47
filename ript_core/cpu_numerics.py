"""CPU float kernels that give the same numbers on every x86-64 processor.

torch picks its CPU kernels by the processor's instruction set (AVX2,
AVX-512) and so does MKL, its matrix multiply; both round differently per
instruction set, and RL amplifies a last-bit difference into another run
(docs/benchmarks.md, "Learning"). ``cpu_numerics: portable`` pins both to
one code path that every processor with AVX2 runs alike:

- ``ATEN_CPU_CAPABILITY=avx2``: torch's AVX2 kernels even on AVX-512;
- ``MKL_CBWR=AVX2``: MKL's conditional numerical reproducibility, its AVX2
  path, bit-identical across processors that have AVX2;
- oneDNN off (``torch.backends.mkldnn``): its kernels pick the instruction
  set themselves, with no reproducibility mode.

Without AVX2 (x86 processors from before 2013) both fall back to their
baseline paths (``default`` / ``COMPATIBLE``): portable among themselves,
other numbers than the AVX2 path. Both settings are read once, when torch
and MKL first run a kernel: set them (:func:`request_portable`) before
torch is imported, as ``ript train`` and ``ript demo`` do.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal

CpuNumerics = Literal["native", "portable"]

AVX2_PATH = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}
BASELINE_PATH = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}


def has_avx2(cpuinfo: str | None = None) -> bool:
    """Whether this processor runs AVX2 (and FMA, which the AVX2 kernels use)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        if not path.exists():
            return False
        cpuinfo = path.read_text()
    flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    words = set(flags.split())
    return {"avx2", "fma"} <= words


def portable_settings(cpuinfo: str | None = None) -> dict[str, str]:
    """The environment of the portable path on this processor."""
    return dict(AVX2_PATH if has_avx2(cpuinfo) else BASELINE_PATH)


def request_portable() -> dict[str, str]:
    """Set the portable path's environment for this process (before torch is
    imported; a torch already imported keeps its kernels, so that is an
    error naming the fix). Returns the settings."""
    settings = portable_settings()
    if "torch" in sys.modules:
        wrong = {k: v for k, v in settings.items() if os.environ.get(k) != v}
        if wrong:
            given = " ".join(f"{k}={v}" for k, v in settings.items())
            raise RuntimeError(
                "cpu_numerics: portable must be chosen before torch is imported (it picks its "
                f"kernels once): run through `ript train`, or start Python with {given}"
            )
    os.environ.update(settings)
    return settings


def apply_in_torch(mode: CpuNumerics) -> str:
    """The part torch sets at run time (oneDNN off); returns a one-line
    description of the kernels in use, for the run's log."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    if mode == "native":
        return f"native CPU kernels ({capability})"
    wanted = os.environ.get("ATEN_CPU_CAPABILITY", "").upper()
    if capability.upper() != wanted:
        raise RuntimeError(
            f"cpu_numerics: portable wants torch's {wanted or 'AVX2'} kernels but torch runs "
            f"{capability} ones: it chose them before ATEN_CPU_CAPABILITY was set; run through "
            "`ript train`, or set the variable before starting Python"
        )
    torch.backends.mkldnn.enabled = False
    mkl = os.environ.get("MKL_CBWR", "unset")
    return f"portable CPU kernels (torch {capability}, MKL_CBWR={mkl}, oneDNN off)"
