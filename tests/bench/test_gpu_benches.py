"""The GPU benches' code paths (ript_core.bench, bench/gpu_*.py) on CPU with pi0-tiny (no timing assertions):
the same correctness checks, timing rows, update rows and JSON files the GPU
run produces, so the bench cannot rot between device calls."""

from __future__ import annotations

import json
import math

import pytest


@pytest.fixture(scope="module")
def bench():
    from ript_core.bench import gpu_policy

    return gpu_policy


def test_gpu_bench_runs_on_cpu_tiny(bench, tmp_path):
    result = bench.main(
        [
            "--preset", "pi0-tiny", "--dtype", "fp32", "--device", "cpu",
            "--batch-sizes", "2", "--iters", "1", "--warmup", "0",
            "--update-iters", "1", "--update-micro", "2", "--workers", "1",
            "--rollouts", "2", "--update-ckpt-micro", "3", "--memory-ckpt-micro", "3",
            "--out", str(tmp_path),
        ]
    )  # fmt: skip
    policy_json = json.loads((tmp_path / "gpu_policy.json").read_text())
    rows = policy_json["rows"]
    assert {(r["impl"], r["mode"]) for r in rows} == {
        ("transformers", "ode"),
        ("ript", "ode"),
        ("ript", "sde"),
    }
    for r in rows:
        for key in ("median_ms", "p90_ms", "chunks_per_s", "tflops", "floor_ms"):
            assert r[key] > 0 and math.isfinite(r[key]), (key, r)
        assert "max_abs_diff_vs_reference" in r and "TFLOP" in r["floor_arithmetic"]
    (check,) = policy_json["checks"]
    # the static-cache path is the eager loop's arithmetic on CPU fp32
    assert check["ode_vs_eager"] <= 1e-5 and check["sde_chain_vs_eager"] <= 1e-5
    assert check["ode_vs_transformers"] <= 1e-4 and check["finite"]
    update = json.loads((tmp_path / "gpu_update.json").read_text())["rows"]
    plain = [u for u in update if not u["checkpointing"]]
    assert plain and all(u["samples_per_s"] > 0 and u["logp_vs_recorded"] <= 1e-4 for u in plain)
    assert all(u["old_recomputed_vs_update"] == 0.0 for u in update)
    # ript-core's own checkpointing runs the same update (transformers' could not)
    ckpts = [u for u in update if u["checkpointing"]]
    # at the first micro-batch, and at the extra one asked for
    assert [u["micro_batch"] for u in ckpts] == [plain[0]["micro_batch"], 3]
    for ckpt in ckpts:
        assert ckpt["samples_per_s"] > 0 and ckpt["logp_vs_recorded"] <= 1e-4, ckpt
    memory = json.loads((tmp_path / "memory_plan.json").read_text())["rows"]
    assert {m["phase"] for m in memory} == {"rollout", "update"}
    assert all(m["predicted_gb"] > 0 for m in memory)
    (ckpt_mem,) = [m for m in memory if m.get("checkpointing")]
    assert ckpt_mem["batch"] == 3 and ckpt_mem["phase"] == "update"
    assert result["gpu_policy"]["meta"]["cuda_graphs"] is False


def test_gpu_profile_bench_splits_a_chunk_into_prefix_and_steps_on_cpu(tmp_path, repo_root):
    """bench/gpu_profile.py on CPU, pi0-tiny: the split adds back up to the
    chunk and the profiler table holds real op counts."""
    import subprocess
    import sys

    out = tmp_path / "profile.json"
    script = repo_root / "bench" / "gpu_profile.py"
    subprocess.run(
        [sys.executable, str(script), "--preset", "pi0-tiny", "--device", "cpu",
         "--dtype", "float32", "--batch-sizes", "1", "--iters", "2", "--out", str(out)],
        check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    steps = result["meta"]["steps"]
    assert row["prefix_ms"] + steps * row["step_ms"] == pytest.approx(row["chunk_ms"])
    assert row["graphs"] is False  # no CUDA here
    table = row["eager_kernels"]
    assert table["kernels"] > 0 and table["kernel_ms"] > 0
    assert any(r["kernel"] == "aten::scaled_dot_product_attention" for r in table["top"])
    # the kinds partition the table
    kinds = table["by_kind"]
    assert sum(k["count"] for k in kinds.values()) == table["kernels"]
    assert sum(k["ms"] for k in kinds.values()) == pytest.approx(table["kernel_ms"])
    assert kinds["attention"]["count"] > 0 and kinds["matmul"]["count"] > 0


def test_gpu_profile_sorts_kernel_names_into_kinds(load_bench):
    """Names from the H100 profile (bench/results/gpu_profile_compiled_h100.json)."""
    kernel_kind = load_bench("gpu_profile").kernel_kind

    assert kernel_kind("nvjet_sm90_tst_192x192_64x4_2x1_v_bz_coopB_TNN") == "matmul"
    assert kernel_kind("void sgemm_largek_lds64<true, false, 5, 5, 4, 4, 4, 34>") == "matmul"
    assert kernel_kind("void cublasLt::splitKreduce_kernel<32, 16, int, float>") == "matmul"
    assert kernel_kind("fmha_cutlassF_bf16_aligned_32x128_gmem_sm80(PyTorchMemEffAttention") == (
        "attention"
    )
    assert kernel_kind("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<96>") == (
        "attention"
    )
    assert kernel_kind("triton_poi_fused__unsafe_view_gelu_mul_6") == "fused/elementwise"
    assert kernel_kind("aten::addmm") == "matmul"
    assert kernel_kind("Memcpy HtoD (Pageable -> Device)") == "copy"
    assert kernel_kind("some_unknown_kernel") == "other"


def test_gpu_profile_groups_device_copies_by_the_op_that_launched_them(load_bench):
    """``copy_launchers`` on events shaped like torch.profiler's: copies are
    summed per (op, shapes, callers); fused kernels whose names mention
    ``_to_copy`` and CPU ops without copies are left out."""
    from types import SimpleNamespace as NS

    gpu_profile = load_bench("gpu_profile")
    copy_launchers, is_copy_kernel = gpu_profile.copy_launchers, gpu_profile.is_copy_kernel

    cpu = NS(name="CPU")
    linear = NS(name="aten::linear", cpu_parent=None)
    addmm = NS(name="aten::addmm", cpu_parent=linear)
    copy = "void at::native::elementwise_kernel<128, 4, direct_copy_kernel_cuda>"
    fused = "triton_red_fused__fused_rms_norm__to_copy_add_0"
    events = [
        NS(name="aten::addmm", device_type=cpu, cpu_parent=linear, input_shapes=[[4304]],
           kernels=[NS(name=copy, duration=232.0), NS(name="nvjet_badd", duration=470.0)]),
        NS(name="aten::addmm", device_type=cpu, cpu_parent=linear, input_shapes=[[4304]],
           kernels=[NS(name=copy, duration=230.0)]),
        NS(name="aten::copy_", device_type=cpu, cpu_parent=addmm, input_shapes=[[2, 3]],
           kernels=[NS(name="Memcpy DtoD (Device -> Device)", duration=10.0)]),
        NS(name="norm", device_type=cpu, cpu_parent=None, input_shapes=[],
           kernels=[NS(name=fused, duration=999.0)]),
        NS(name=copy, device_type=NS(name="CUDA"), cpu_parent=None, input_shapes=[],
           kernels=[NS(name=copy, duration=5.0)]),
    ]  # fmt: skip
    rows = copy_launchers(NS(events=lambda: events))
    assert [(r["op"], r["count"], r["callers"]) for r in rows] == [
        ("aten::addmm", 2, "aten::linear"),
        ("aten::copy_", 1, "aten::addmm < aten::linear"),
    ]
    assert rows[0]["ms"] == pytest.approx(0.462) and rows[1]["ms"] == pytest.approx(0.010)
    assert is_copy_kernel(copy) and not is_copy_kernel(fused)
    is_matmul_kernel, kernel_launchers = gpu_profile.is_matmul_kernel, gpu_profile.kernel_launchers

    gemms = kernel_launchers(NS(events=lambda: events), is_matmul_kernel)
    assert [(r["op"], r["count"], r["shapes"]) for r in gemms] == [("aten::addmm", 1, "[[4304]]")]
    assert gemms[0]["ms"] == pytest.approx(0.470)


def test_update_profile_bench_on_cpu_tiny(load_bench, tmp_path):
    """bench/gpu_update_profile.py on CPU, pi0-tiny: one row per run, a
    profile whose kinds add up to the profiled op time."""
    bench = load_bench("gpu_update_profile")
    result = bench.main(
        ["--preset", "pi0-tiny", "--dtype", "fp32", "--device", "cpu",
         "--runs", "2:off,2:on", "--iters", "1", "--out", str(tmp_path)]
    )  # fmt: skip
    saved = json.loads((tmp_path / "gpu_update_profile.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    assert [(r["micro_batch"], r["checkpointing"], r["attention"]) for r in saved["rows"]] == [
        (2, False, "policy"),
        (2, True, "policy"),
    ]
    for row in saved["rows"]:
        assert "error" not in row and row["samples_per_s"] > 0
        prof = row["profile"]
        assert prof["kernels"] > 0
        assert sum(prof["ms_by_kind"].values()) == pytest.approx(prof["kernel_ms"], rel=1e-3)
        assert prof["ms_by_kind"].get("matmul", 0) > 0
    # the policy's attention set is restored afterwards
    import ript_core.policy.attention as attention

    assert bench.ATTENTION_SETS["policy"] == attention.TRAINING_CUDA_BACKENDS


def test_release_frees_what_a_caught_error_keeps_alive():
    """A caught OutOfMemoryError keeps the failing frame's tensors alive in a
    traceback cycle; ``release`` (between a single call's measurements)
    collects them, drops the sampler's graphs and the gradients."""
    import gc
    import weakref

    import torch

    from ript_core.bench.pi0 import release
    from ript_core.policy.fast.sampler import FastSampler
    from tests.policy.conftest import tiny_policy

    policy = tiny_policy()
    fast = FastSampler(policy, use_graphs=False)
    held: list[weakref.ref] = []

    def fails() -> None:
        activations = torch.ones(1000)
        held.append(weakref.ref(activations))
        raise RuntimeError("out of memory")

    gc.disable()  # only release's collect may free the cycle
    try:
        try:
            fails()
        except RuntimeError as exc:
            cycle = [exc, exc.__traceback__]
            cycle.append(cycle)  # what a handler that stores the error builds
            del exc, cycle
        param = next(policy.parameters())
        param.grad = torch.zeros_like(param)
        assert held[0]() is not None  # still alive: nothing collected it
        assert release(policy, fast) is None  # CPU: nothing allocated to report
        assert held[0]() is None
        assert all(p.grad is None for p in policy.parameters())
    finally:
        gc.enable()


def test_update_rows_leave_no_tensor_alive_under_checkpointing():
    """Each update row, checkpointed ones included, frees everything it made.
    A checkpointed forward whose graph is dropped without a backward is never
    freed (it held ~10 GB of pi0 activations through a single-call H100
    run); the rows now run the backward of every gradient forward."""
    import gc

    import torch

    from ript_core.bench.gpu_update import update_rows
    from ript_core.bench.pi0 import footprint
    from ript_core.policy.fast.sampler import FastSampler
    from tests.policy.conftest import tiny_policy

    policy = tiny_policy()
    fast = FastSampler(policy, use_graphs=False)
    fp = footprint(policy, 2)

    def live() -> set[int]:
        gc.collect()
        return {id(o) for o in gc.get_objects() if isinstance(o, torch.Tensor)}

    before = live()
    rows = update_rows(policy, fast, [2], 2, 1, fp, 1e12, [3])
    assert [(r["micro_batch"], r["checkpointing"]) for r in rows] == [
        (2, False),
        (2, True),
        (3, True),
    ]
    assert all(r["samples_per_s"] for r in rows)
    assert live() - before == set()
