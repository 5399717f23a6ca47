"""``cpu_numerics: portable``: one code path for every x86-64 processor.

The portable path must not depend on which instruction sets the processor
has beyond AVX2. On this machine that is checked by restricting MKL to AVX2
(``MKL_ENABLE_INSTRUCTIONS``), as a processor without AVX-512 would run it,
and comparing a whole short training run bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ript_core.cpu_numerics import AVX2_PATH, BASELINE_PATH, has_avx2, portable_settings

from .rl.conftest import tiny_config

AVX512 = "flags\t\t: fpu sse sse2 avx fma avx2 avx512f avx512bw\n"
OLD = "flags\t\t: fpu sse sse2 sse4_2 avx\n"


def test_the_path_follows_the_processor():
    assert has_avx2(AVX512) and not has_avx2(OLD)
    assert (
        portable_settings(AVX512)
        == AVX2_PATH
        == {
            "ATEN_CPU_CAPABILITY": "avx2",
            "MKL_CBWR": "AVX2",
        }
    )
    assert portable_settings(OLD) == BASELINE_PATH


def _train(tmp_path, name: str, numerics: str, env_extra: dict[str, str]) -> list[dict]:
    from ript_core.config import dump_config

    cfg = tiny_config(
        tmp_path / name,
        cpu_numerics=numerics,
        torch_threads=1,
        # an update whatever the tiny policy's success: every group kept, and a
        # BC term that moves the weights even where advantages are zero
        ript={"iterations": 1, "keep_uninformative_groups": True},
        bc={"rl_coef": 0.5},
        checkpoint_every=0,
    )
    path = tmp_path / f"{name}.yaml"
    dump_config(cfg, path)
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR")}
    proc = subprocess.run(
        [sys.executable, "-m", "ript_core", "train", str(path), "--quiet"],
        env={**env, **env_extra},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ("portable CPU kernels" in proc.stdout) == (numerics == "portable")
    rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").open()]
    # the numbers of the run, not its timings
    drop = ("time/", "_per_s", "_frac", "occupancy")
    return [{k: v for k, v in r.items() if not any(d in k for d in drop)} for r in rows]


@pytest.mark.skipif(not has_avx2(), reason="the AVX2 path needs an AVX2 processor")
def test_a_portable_run_is_the_same_whatever_instruction_sets_mkl_may_use(tmp_path):
    full = _train(tmp_path, "full", "portable", {})
    avx2_only = _train(tmp_path, "avx2", "portable", {"MKL_ENABLE_INSTRUCTIONS": "AVX2"})
    assert full == avx2_only
    # BC, rollouts and an update that moved the weights all ran
    assert any(r.get("update/optimizer_steps", 0) > 0 and r["update/grad_norm"] > 0 for r in full)


def test_portable_after_torch_chose_its_kernels_is_an_error_naming_the_fix():
    code = (
        "import torch; torch.ones(2).sum()\n"
        "from ript_core.cpu_numerics import apply_in_torch, request_portable\n"
        "try:\n"
        "    request_portable(); apply_in_torch('portable')\n"
        "except RuntimeError as exc:\n"
        "    print(exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    ).stdout
    assert "before torch is imported" in out or "before ATEN_CPU_CAPABILITY was set" in out
    assert "ript train" in out
