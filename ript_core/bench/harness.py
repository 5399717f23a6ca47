"""Timing, run metadata and the command line shared by the GPU benches in bench/."""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

#: ``--dtype`` of the benches -> ``PolicyConfig.dtype``.
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}
#: H100 SXM dense bf16 tensor-core peak (datasheet): the MFU denominator.
H100_BF16_PEAK = 989e12


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op off CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timings(fn: Callable[[], object], device: torch.device, iters: int, warmup: int) -> list[float]:
    """Wall ms per call, synchronised before and after each."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        out.append((time.perf_counter() - start) * 1e3)
    return out


def p90(xs: list[float]) -> float:
    """The 90th percentile."""
    return float(np.percentile(xs, 90))


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def run_meta(preset: str, dtype: str, device: torch.device) -> dict[str, Any]:
    """What a result file says about the run: model, device, versions, date."""
    return {
        "preset": preset,
        "dtype": dtype,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def model_parser(doc: str | None) -> argparse.ArgumentParser:
    """The arguments every GPU policy bench takes: preset, dtype, device."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="pi0")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--device", default="auto")
    return parser
