"""The memory-aware planner over a table of fake machines (no model is built,
except one ``meta``-device count that allocates nothing)."""

from __future__ import annotations

import os
import re

import attrs
import pytest

from ript_core.cli import main
from ript_core.plan import (
    CUDA_FIXED_ALLOWANCE,
    GB,
    HOST_FIXED_ALLOWANCE,
    MARGIN_FRACTION,
    MIN_EFFICIENT_MICRO_BATCH,
    BackendFootprint,
    MachineSpec,
    PolicyFootprint,
    detect_machine,
    kv_cache_bytes,
    model_bytes,
    plan,
    rollout_activation_bytes,
    update_activation_bytes,
)

CPU_24GB_2C = MachineSpec.cpu_only(24 * GB, 2)
GPU_80GB_16C = MachineSpec.gpu(80 * GB, 16, 128 * GB)
GPU_24GB_8C = MachineSpec.gpu(24 * GB, 8, 32 * GB)
MACHINES = {"cpu24-2c": CPU_24GB_2C, "gpu80-16c": GPU_80GB_16C, "gpu24-8c": GPU_24GB_8C}

# per-env costs of the built-in backends (RAM of one worker, seconds of one step)
TOY = BackendFootprint("toy", 20_000_000, 0.0003)
LIBERO = BackendFootprint("libero", 1 * GB, 0.19)
MANISKILL = BackendFootprint("maniskill", GB // 2, 0.035)
BACKENDS = {"toy": TOY, "libero": LIBERO, "maniskill": MANISKILL}


@pytest.fixture
def checkpointing_policy(monkeypatch):
    """Plans with the planner free to turn checkpointing on, whatever
    ``ACTIVATION_CHECKPOINTING_AVAILABLE`` says."""
    from ript_core.plan import phases

    monkeypatch.setattr(phases, "ACTIVATION_CHECKPOINTING_AVAILABLE", True)


def _pi0(machine: MachineSpec, strategy: str = "full") -> PolicyFootprint:
    dtype = 2 if machine.device == "cuda" else 4  # bf16 on GPU, fp32 on CPU
    return PolicyFootprint.pi0(dtype_bytes=dtype).for_strategy(strategy)


def _allowance(machine: MachineSpec) -> int:
    return CUDA_FIXED_ALLOWANCE if machine.device == "cuda" else HOST_FIXED_ALLOWANCE


# --- the policy's numbers --------------------------------------------------------


def test_full_pi0_counts_and_weight_bytes():
    shipped = PolicyFootprint.pi0(drop_unused_expert_embedding=False)
    assert shipped.n_params == 3_501_372_176  # transformers' PI0Config() as shipped
    assert model_bytes(shipped) == pytest.approx(7.0e9, rel=0.01)  # 3.5B in bf16 ≈ 7 GB
    fp = PolicyFootprint.pi0()
    assert fp.n_params == shipped.n_params - 257152 * 1024  # unused expert embedding dropped
    assert fp.n_vlm_params == pytest.approx(2.92e9, rel=0.01)
    assert fp.n_expert_params == pytest.approx(0.315e9, rel=0.01)
    assert model_bytes(attrs.evolve(fp, dtype_bytes=4)) == 2 * model_bytes(fp)
    tiny = PolicyFootprint.pi0_tiny()
    assert 150_000 < tiny.n_params < 400_000


def test_strategies_change_trainable_params_not_the_model():
    fp = PolicyFootprint.pi0()
    full, expert, lora = (fp.for_strategy(s) for s in ("full", "expert", "lora"))
    assert full.n_trainable == full.n_params
    assert expert.n_trainable == fp.n_expert_params and expert.n_params == fp.n_params
    assert not expert.grads_through_vlm and lora.grads_through_vlm
    assert 10e6 < lora.n_trainable < 100e6  # adapters + projections
    assert lora.n_params == fp.n_params + lora.n_adapter_params
    assert lora.for_strategy("full").n_params == fp.n_params  # adapters removed again
    with pytest.raises(ValueError, match="unknown strategy"):
        fp.for_strategy("half")


def test_from_hf_config_counts_on_meta_match_the_formulas():
    presets = pytest.importorskip("transformers")  # noqa: F841
    full = PolicyFootprint.from_hf_config({}, n_cameras=3)  # PI0Config() defaults = openpi pi0
    assert full.n_params == PolicyFootprint.pi0().n_params
    assert (full.n_vlm_params, full.n_expert_params) == (
        PolicyFootprint.pi0().n_vlm_params,
        PolicyFootprint.pi0().n_expert_params,
    )
    assert full.text == PolicyFootprint.pi0().text
    assert full.expert == PolicyFootprint.pi0().expert
    assert full.prefix_tokens == 3 * 256 + 48
    from ript_core.policy.io.presets import preset_dict

    tiny_cfg = preset_dict("pi0-tiny")["pi0"]
    tiny = PolicyFootprint.from_hf_config(tiny_cfg, dtype_bytes=4, n_cameras=2, text_tokens=16)
    ref = PolicyFootprint.pi0_tiny()
    assert (tiny.n_params, tiny.n_vlm_params, tiny.n_expert_params) == (
        ref.n_params,
        ref.n_vlm_params,
        ref.n_expert_params,
    )
    assert (tiny.text, tiny.vision, tiny.expert) == (ref.text, ref.vision, ref.expert)
    assert (tiny.chunk_size, tiny.num_steps, tiny.prefix_tokens) == (10, 5, ref.prefix_tokens)


def test_kv_cache_from_architecture_and_inference_peak_matches_h100_measurement():
    fp = PolicyFootprint.pi0()  # 3 cameras: 816 prefix tokens, 18 layers, 1 KV head of 256
    assert kv_cache_bytes(fp) == 2 * 18 * 1 * 256 * 816 * 2
    assert kv_cache_bytes(fp, 8) == 8 * kv_cache_bytes(fp)
    # docs/planner.md: shipped transformers pi0, bf16, 2 cameras, batch 1 → 7.2 GB peak.
    shipped = PolicyFootprint.pi0(n_cameras=2, drop_unused_expert_embedding=False)
    peak = model_bytes(shipped) + kv_cache_bytes(shipped) + rollout_activation_bytes(shipped, 1)
    assert peak == pytest.approx(7.2e9, rel=0.05)


def test_checkpointing_and_frozen_vlm_cut_update_activations():
    fp = PolicyFootprint.pi0()
    full = update_activation_bytes(fp, 1, checkpointing=False)
    ckpt = update_activation_bytes(fp, 1, checkpointing=True)
    expert = update_activation_bytes(fp.for_strategy("expert"), 1, checkpointing=False)
    assert ckpt < full / 5
    assert expert < full / 3
    assert update_activation_bytes(fp, 4, checkpointing=False) == 4 * full
    one_step = update_activation_bytes(attrs.evolve(fp, logp_steps=1), 1, checkpointing=False)
    assert one_step < full  # sde_scheme="one": one expert pass with grad


# --- plans over the machine table ------------------------------------------------

TABLE = [
    # machine, preset, strategy, backend, fits, n_env_workers
    ("cpu24-2c", "pi0-tiny", "full", "toy", True, 2),
    ("cpu24-2c", "pi0", "full", "libero", False, None),
    ("cpu24-2c", "pi0", "expert", "libero", True, 2),
    ("cpu24-2c", "pi0", "lora", "libero", True, 2),
    ("gpu80-16c", "pi0-tiny", "full", "toy", True, 15),
    ("gpu80-16c", "pi0", "full", "libero", True, 15),
    ("gpu80-16c", "pi0", "expert", "maniskill", True, 15),
    ("gpu24-8c", "pi0-tiny", "full", "toy", True, 7),
    ("gpu24-8c", "pi0", "full", "libero", False, None),
    ("gpu24-8c", "pi0", "expert", "libero", True, 7),
    ("gpu24-8c", "pi0", "lora", "libero", True, 7),
]


@pytest.mark.parametrize(("machine", "preset", "strategy", "backend", "fits", "n_env"), TABLE)
def test_machine_table(machine, preset, strategy, backend, fits, n_env, checkpointing_policy):
    m = MACHINES[machine]
    tiny = PolicyFootprint.pi0_tiny()
    fp = _pi0(m, strategy) if preset == "pi0" else tiny.for_strategy(strategy)
    p = plan(m, fp, BACKENDS[backend], rollouts_per_update=64)
    assert p.fits is fits
    # the budget keeps the stated margin: 10 % of the device + a fixed allowance
    assert p.usable_bytes == int(m.device_total_bytes * (1 - MARGIN_FRACTION)) - _allowance(m)
    text = "\n".join(p.reasons)
    for word in ("budget", "env workers", "activation checkpointing", "micro-batch"):
        assert word in text
    # the single model copy is in every phase, whatever the number of envs
    for phase in ("rollout", "update"):
        assert p.breakdown[phase]["weights"] == model_bytes(fp)
        assert p.peak_bytes[phase] == sum(p.breakdown[phase].values())
    # the CUDA fast sampler's fused expert copies (q/k/v and gate/up rows x width)
    e = fp.expert
    fused = e.layers * e.width * (e.heads * e.head_dim + 2 * e.kv_heads * e.head_dim + 2 * e.mlp)
    on_gpu = m.device == "cuda"
    for phase in ("rollout", "update"):  # kept with the sampler through the update
        assert p.breakdown[phase].get("fused_projections") == (
            fused * fp.dtype_bytes if on_gpu else None
        )
    if on_gpu and preset == "pi0":
        assert p.breakdown["rollout"]["fused_projections"] == 18 * 1024 * 10752 * 2  # 396 MB
    if fits:
        assert max(p.peak_bytes.values()) <= p.usable_bytes
        assert max(p.peak_bytes.values()) < 0.9 * m.device_total_bytes
        assert p.n_env_workers == n_env
        assert 1 <= p.inference_batch <= p.n_env_workers
        assert p.train_micro_batch * p.grad_accum >= p.train_batch == 64
        assert (p.train_micro_batch - 1) * p.grad_accum < 64  # no wasted accumulation step
        assert "fits: peak" in text
        if m.device == "cuda":
            assert p.host_bytes <= p.host_usable_bytes
    else:
        assert "does not fit" in text
    if preset == "pi0-tiny":  # tiny: everything at once, nothing to trade off
        assert p.train_micro_batch == 64 and not p.activation_checkpointing
        assert p.peak_bytes["update"] < 0.01 * p.usable_bytes


def test_full_strategy_on_24gb_gpu_recommends_expert_or_lora():
    p = plan(GPU_24GB_8C, _pi0(GPU_24GB_8C), LIBERO, rollouts_per_update=64)
    assert not p.fits
    # weights 6.5 GB + fp32 master/moments 39 GB + fp32 grads 13 GB alone exceed 24 GB
    assert p.breakdown["update"]["optimizer_state"] == pytest.approx(38.9e9, rel=0.01)
    assert p.peak_bytes["update"] > 58e9
    text = "\n".join(p.reasons)
    assert "use strategy expert" in text and "use strategy lora" in text
    need = int(text.split("a GPU with ≥ ")[1].split(" GB")[0])
    assert 60 <= need <= 80  # full fine-tuning of pi0 needs an 80 GB-class GPU
    expert = plan(GPU_24GB_8C, _pi0(GPU_24GB_8C, "expert"), LIBERO, rollouts_per_update=64)
    assert expert.fits and expert.peak_bytes["update"] <= expert.usable_bytes


def test_full_strategy_on_80gb_gpu_needs_checkpointing(checkpointing_policy):
    p = plan(GPU_80GB_16C, _pi0(GPU_80GB_16C), LIBERO, rollouts_per_update=64)
    assert p.fits and p.activation_checkpointing
    assert p.train_micro_batch >= 8
    assert "activation checkpointing on: without it only a micro-batch of" in "\n".join(p.reasons)
    no_ckpt = plan(
        GPU_80GB_16C,
        _pi0(GPU_80GB_16C),
        LIBERO,
        rollouts_per_update=64,
        overrides={"activation_checkpointing": False},
    )
    assert no_ckpt.fits and no_ckpt.train_micro_batch <= 2  # 4 GB+ of activations per sample


def test_cpu_only_full_pi0_suggests_cheaper_strategy_and_bf16():
    p = plan(CPU_24GB_2C, _pi0(CPU_24GB_2C), LIBERO, rollouts_per_update=16)
    text = "\n".join(p.reasons)
    assert not p.fits
    assert "use strategy expert" in text or "use strategy lora" in text
    assert "a machine (or a GPU) with ≥" in text


@pytest.mark.parametrize("cores", [1, 2, 3, 4, 8, 16, 32, 64])
def test_env_workers_scale_with_cores(cores):
    m = MachineSpec.gpu(80 * GB, cores, 512 * GB)
    fp = PolicyFootprint.pi0_tiny()
    p = plan(m, fp, TOY, rollouts_per_update=48)
    spare = cores - 1 if cores > 2 else cores  # one core stays with the main process
    expected = min(spare, 48)
    assert p.n_env_workers == expected
    assert p.inference_batch == expected  # one batched forward over all live envs
    # cores_per_env: a backend whose env keeps 2 cores busy gets half the workers
    heavy = attrs.evolve(TOY, cores_per_env=2.0)
    assert plan(m, fp, heavy, rollouts_per_update=48).n_env_workers == min(max(spare // 2, 1), 48)


def test_env_workers_bounded_by_ram_and_rollouts():
    small_ram = MachineSpec.gpu(80 * GB, 16, 8 * GB)  # 8 GB host: 0.9*8 - 2 = 5.2 GB usable
    p = plan(small_ram, PolicyFootprint.pi0_tiny(), LIBERO, rollouts_per_update=64)
    assert p.n_env_workers == 5
    assert "bound by RAM" in "\n".join(p.reasons)
    few = plan(GPU_80GB_16C, PolicyFootprint.pi0_tiny(), TOY, rollouts_per_update=4)
    assert few.n_env_workers == 4
    assert "bound by rollouts per update" in "\n".join(few.reasons)
    # on a CPU-only machine the envs share RAM with the model: fewer fit beside full pi0
    cpu = MachineSpec.cpu_only(24 * GB, 64)
    tiny_env = plan(cpu, PolicyFootprint.pi0_tiny(), LIBERO, rollouts_per_update=64)
    big_env = plan(cpu, _pi0(cpu, "expert"), LIBERO, rollouts_per_update=64)
    assert big_env.n_env_workers < tiny_env.n_env_workers


def test_model_is_counted_once_whatever_the_number_of_envs(checkpointing_policy):
    fp = PolicyFootprint.pi0(dtype_bytes=2).for_strategy("lora")
    cpu = MachineSpec.cpu_only(64 * GB, 32)
    fixed = {"inference_batch": 1, "train_micro_batch": 1, "activation_checkpointing": True}
    backend = LIBERO
    one = plan(cpu, fp, backend, rollouts_per_update=64, overrides={"n_env_workers": 1, **fixed})
    many = plan(cpu, fp, backend, rollouts_per_update=64, overrides={"n_env_workers": 16, **fixed})
    for phase in ("rollout", "update"):
        assert (
            one.breakdown[phase]["weights"] == many.breakdown[phase]["weights"] == model_bytes(fp)
        )
        # 15 more workers cost exactly 15 env footprints, never a model copy
        assert many.peak_bytes[phase] - one.peak_bytes[phase] == 15 * backend.env_ram_bytes
    gpu_one = plan(
        GPU_80GB_16C, fp, backend, rollouts_per_update=64, overrides={"n_env_workers": 1, **fixed}
    )
    gpu_many = plan(
        GPU_80GB_16C, fp, backend, rollouts_per_update=64, overrides={"n_env_workers": 15, **fixed}
    )
    assert gpu_one.peak_bytes == gpu_many.peak_bytes  # env RAM is host RAM on a GPU machine
    assert gpu_many.host_bytes == 15 * backend.env_ram_bytes


# --- overrides ------------------------------------------------------------------------


def test_override_that_fits_wins_and_is_recorded():
    fp = _pi0(GPU_80GB_16C, "expert")
    p = plan(
        GPU_80GB_16C,
        fp,
        LIBERO,
        rollouts_per_update=64,
        overrides={"train_micro_batch": 16, "n_env_workers": 8},
    )
    assert p.fits
    assert (p.train_micro_batch, p.grad_accum, p.n_env_workers) == (16, 4, 8)
    assert p.overridden == ("n_env_workers", "train_micro_batch")
    assert p.settings()["train_micro_batch"] == 16
    assert "override: train_micro_batch = 16" in p.reasons
    acc = plan(
        GPU_80GB_16C,
        fp,
        LIBERO,
        rollouts_per_update=64,
        overrides={"grad_accum": 8},
    )
    assert (acc.train_micro_batch, acc.grad_accum) == (8, 8)


def test_override_that_does_not_fit_is_reported_with_the_fix():
    fp = _pi0(GPU_24GB_8C, "expert")
    auto = plan(GPU_24GB_8C, fp, LIBERO, rollouts_per_update=64)
    p = plan(
        GPU_24GB_8C,
        fp,
        LIBERO,
        rollouts_per_update=64,
        overrides={"train_micro_batch": 64, "activation_checkpointing": False},
    )
    assert auto.fits and not p.fits
    assert p.train_micro_batch == 64  # the user's value is kept, not silently changed
    text = "\n".join(p.reasons)
    assert "does not fit: update phase of the overridden plan" in text
    assert f"train_micro_batch={auto.train_micro_batch}" in text
    with pytest.raises(ValueError, match="unknown plan override"):
        plan(GPU_24GB_8C, fp, TOY, rollouts_per_update=8, overrides={"envs": 3})
    with pytest.raises(ValueError, match="integer >= 1"):
        plan(
            GPU_24GB_8C,
            fp,
            TOY,
            rollouts_per_update=8,
            overrides={"grad_accum": 0},
        )


def test_nothing_fits_on_a_small_gpu_says_what_would():
    tiny_gpu = MachineSpec.gpu(4 * GB, 8, 32 * GB)
    p = plan(tiny_gpu, _pi0(tiny_gpu, "lora"), TOY, rollouts_per_update=8)
    assert not p.fits
    text = "\n".join(p.reasons)
    assert "a GPU with ≥" in text and "use strategy" not in text  # 6.5 GB of bf16 weights
    busy = attrs.evolve(GPU_24GB_8C, device_free_bytes=8 * GB)  # another process holds 16 GB
    q = plan(busy, _pi0(busy, "expert"), TOY, rollouts_per_update=8)
    assert q.usable_bytes == 8 * GB - CUDA_FIXED_ALLOWANCE and not q.fits


# --- the real machine and the CLI ---------------------------------------------------------


def test_detect_machine_reads_this_machine():
    m = detect_machine()
    assert m.cpu_cores == len(os.sched_getaffinity(0))
    assert 1 * GB < m.cpu_ram_bytes < 1 << 50
    assert 0 < m.host_free_bytes <= m.cpu_ram_bytes
    if m.device == "cpu":
        assert m.device_total_bytes == m.cpu_ram_bytes


def test_cli_plan_for_a_24gb_gpu_prints_phases_and_reasons(capsys, checkpointing_policy):
    argv = ["plan", "--preset", "pi0", "--device-memory-gb", "24", "--cores", "8"]
    rc = main([*argv, "--cpu-ram-gb", "32", "--backend-footprint", "libero"])
    out = capsys.readouterr().out
    assert rc == 1
    # 58.7 GB + the fast sampler's 0.40 GB of fused expert copies
    assert "rollout" in out and "update" in out and "59.1 GB" in out
    assert "does not fit" in out and "use strategy expert" in out
    rc = main([*argv, "--cpu-ram-gb", "32", "--strategy", "expert", "--train-micro-batch", "4"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "n_env_workers=7" in out and "train_micro_batch=4 (override)" in out
    assert "grad_accum=16" in out and "verdict: fits" in out


def test_cli_plan_tiny_on_a_cpu_machine(capsys):
    rc = main(["plan", "--device", "cpu", "--cpu-ram-gb", "24", "--cores", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "pi0-tiny (full, fp32)" in out
    assert "n_env_workers=2" in out and "activation_checkpointing=off" in out
    assert "env workers: 2 = min(cores: 2" in out
    with pytest.raises(SystemExit) as exit_:
        main(["plan", "--device", "cpu", "--cores", "2", "--strategy", "banana"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'banana'" in err and "'full', 'expert', 'lora'" in err
    assert "attrs" not in err  # a CLI user gets flags, not the Python API


def test_cli_plan_reads_in_80_columns(capsys, monkeypatch):
    """Every table fits an 80-column terminal uncut, and numbers carry units
    a reader expects (a tiny model's params in k, its caches in kB)."""
    from ript_core.cli import console

    monkeypatch.setattr(console, "width", 80)
    rc = main(["plan", "--device", "cpu", "--cpu-ram-gb", "24", "--cores", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "…" not in out
    assert max(len(line) for line in out.splitlines() if line[:1] in "┃│┏┡└") <= 80
    assert "pi0-tiny, 284k params in fp32" in out
    assert "strategy full: 284k trainable" in out
    row = next(line for line in out.splitlines() if line.startswith("│ prefix cache / sample"))
    assert row.count("kB") == 3  # full, lora, expert: one column each
    assert not re.search(r"(?<![\d.])0\.0 MB", out)


def test_cli_plan_that_does_not_fit_ends_with_the_flags_that_fit(capsys, monkeypatch):
    from ript_core.cli import console

    monkeypatch.setattr(console, "width", 80)
    argv = ["plan", "--preset", "pi0", "--strategy", "lora", "--device", "cpu", "--cores", "2"]
    rc = main([*argv, "--cpu-ram-gb", "16"])
    out = capsys.readouterr().out
    assert rc == 1
    tail = out.strip().splitlines()[-3:]
    assert tail[0] == "verdict: does not fit"
    assert tail[1].startswith("  fits with: --dtype bfloat16 (peak ")
    # each advertised fix really fits: the same plan with that flag exits 0
    assert main([*argv, "--cpu-ram-gb", "16", "--dtype", "bfloat16"]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == "verdict: fits"
    # no contradictory zeros beside the plan's own 1s
    rc = main([*argv, "--cpu-ram-gb", "16"])
    out = capsys.readouterr().out
    assert "0.0 MB left" not in out and "largest fitting micro-batch: 0" not in out
    assert "none left: the model alone is" in out
    assert "not even a micro-batch of 1 fits" in out
    assert "a policy call ≈ 146 ms + 209 s × batch" in out


@pytest.mark.parametrize(
    ("fn", "value", "text"),
    [
        ("fmt_gb", 0, "0"),
        ("fmt_gb", 12_300, "12.3 kB"),
        ("fmt_gb", 1_100_000, "1.1 MB"),
        ("fmt_gb", 0.45e9, "0.45 GB"),
        ("fmt_gb", 13.2e9, "13.2 GB"),
        ("fmt_count", 284_416, "284k"),
        ("fmt_count", 56.33e6, "56.3M"),
        ("fmt_count", 3.29e9, "3.29B"),
        ("fmt_duration", 0.146, "146 ms"),
        ("fmt_duration", 209.4, "209 s"),
        ("fmt_duration", 4190, "69.8 min"),
    ],
)
def test_units_of_the_plan_messages(fn, value, text):
    from ript_core.plan import units

    assert getattr(units, fn)(value) == text


# --- trainable-parameter strategies (issue 12) -------------------------------------------

GPUS = {24: MachineSpec.gpu(24 * GB, 8, 64 * GB), 48: MachineSpec.gpu(48 * GB, 8, 64 * GB)}
GPUS[80] = MachineSpec.gpu(80 * GB, 8, 64 * GB)


def test_lora_footprint_follows_its_settings():
    from ript_core.policy.config import LoraSettings

    fp = PolicyFootprint.pi0()
    both = fp.for_strategy("lora", lora=LoraSettings(rank=32))
    expert_only = fp.for_strategy("lora", lora=LoraSettings(rank=32, targets=["expert"]))
    r8 = fp.for_strategy("lora", lora=LoraSettings(rank=8))
    # rank × (in + out) per adapted linear; Gemma-2B layer: q 2048→2048, k/v 2048→256,
    # o 2048→2048, gate/up 2048→16384, down 16384→2048
    per_text_layer = 32 * (4096 + 2304 + 2304 + 4096 + 18432 * 3)
    assert both.n_adapter_params - expert_only.n_adapter_params == 18 * per_text_layer
    assert r8.n_adapter_params * 4 == both.n_adapter_params
    assert both.grads_through_vlm and not expert_only.grads_through_vlm
    no_proj = fp.for_strategy("lora", lora=LoraSettings(train_projections=False))
    assert no_proj.n_trainable == no_proj.n_adapter_params
    # adapters on the frozen VLM's Gemma layers still store their activations, never SigLIP's
    full_act = update_activation_bytes(fp, 1, False)
    lora_act = update_activation_bytes(both, 1, False)
    expert_act = update_activation_bytes(expert_only, 1, False)
    assert expert_act < lora_act < full_act


@pytest.mark.parametrize("gb", [24, 48, 80])
def test_strategies_on_fake_gpus_and_the_recommendation_fits(gb):
    from ript_core.plan import recommend_strategy, strategy_costs

    m = GPUS[gb]
    fp = PolicyFootprint.pi0(dtype_bytes=2)
    costs = {c.strategy: c for c in strategy_costs(m, fp, LIBERO, rollouts_per_update=64)}
    assert set(costs) == {"full", "lora", "expert"}
    for c in costs.values():
        p = c.plan
        # every prediction is itemised and adds up
        assert c.trainable_weight_bytes + c.frozen_weight_bytes == p.breakdown["update"]["weights"]
        assert p.breakdown["update"]["gradients"] == c.grad_bytes
        assert p.breakdown["update"]["optimizer_state"] == c.optimizer_bytes
        assert c.activations_per_sample_ckpt < c.activations_per_sample
        assert c.prefix_cache_per_sample == kv_cache_bytes(fp)
    # cheaper strategies hold less training state
    assert (
        costs["lora"].optimizer_bytes
        < costs["expert"].optimizer_bytes
        < costs["full"].optimizer_bytes
    )
    assert costs["full"].plan.fits is (gb == 80)  # ≈ 59 GB of weights + state before activations
    assert costs["lora"].plan.fits and costs["expert"].plan.fits
    rec = recommend_strategy(m, fp.for_strategy("full"), LIBERO)
    assert rec is not None
    best, why = rec
    assert costs[best].plan.fits
    assert best == ("full" if gb == 80 else "lora")
    if gb != 80:
        # the user's full choice does not fit: the plan names the recommendation and why
        p = costs["full"].plan
        assert p.recommended_strategy == "lora"
        text = "\n".join(p.reasons)
        assert "recommended: strategy lora — full needs ≥" in text and "that fits" in text
    else:
        assert costs["full"].plan.recommended_strategy is None


def test_expert_recommended_when_lora_does_not_fit_either():
    from ript_core.plan import recommend_strategy
    from ript_core.policy.config import LoraSettings

    fp = PolicyFootprint.pi0(dtype_bytes=2)
    huge = LoraSettings(rank=1024)  # adapters as big as the VLM: lora no longer saves memory
    rec = recommend_strategy(GPUS[24], fp, LIBERO, lora=huge)
    assert rec is not None and rec[0] == "expert"
    assert "lora needs ≥" in rec[1] and "VLM is frozen" in rec[1]
    expert = plan(GPUS[24], fp.for_strategy("expert"), LIBERO, rollouts_per_update=64)
    assert expert.fits
    none = recommend_strategy(MachineSpec.gpu(4 * GB, 8, 64 * GB), fp, TOY)
    assert none is None  # 6.5 GB of bf16 weights: no strategy helps


def test_cli_plan_strategy_table_and_recommendation(capsys, monkeypatch):
    from ript_core.cli import console

    monkeypatch.setattr(console, "width", 250)  # the strategy table is wide
    argv = ["plan", "--preset", "pi0", "--device-memory-gb", "48", "--cores", "8"]
    rc = main([*argv, "--cpu-ram-gb", "64", "--backend-footprint", "libero"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "strategies" in out and "AdamW state" in out and "prefix cache / sample" in out
    assert "recommendation: --strategy lora" in out
    rc = main([*argv, "--cpu-ram-gb", "64", "--strategy", "lora", "--lora-targets", "expert"])
    out = capsys.readouterr().out
    assert rc == 0 and "recommendation:" not in out and "chosen" in out


def test_checkpointing_is_planned_when_the_update_fits_only_a_small_micro_batch():
    """Full pi0 on an 80 GB GPU fits a micro-batch of a few samples without
    checkpointing: too small to keep the GPU busy, so the planner turns it on
    (its memory model is measured on the H100) and sizes a larger micro-batch
    with it; ``activation_checkpointing: off`` keeps the small one."""
    p = plan(GPU_80GB_16C, _pi0(GPU_80GB_16C), LIBERO, rollouts_per_update=64)
    assert p.activation_checkpointing and p.fits
    assert p.peak_bytes["update"] <= p.usable_bytes
    assert any(r.startswith("activation checkpointing on: without it only") for r in p.reasons)
    off = plan(
        GPU_80GB_16C,
        _pi0(GPU_80GB_16C),
        LIBERO,
        rollouts_per_update=64,
        overrides={"activation_checkpointing": False},
    )
    assert not off.activation_checkpointing and off.fits
    assert 1 <= off.train_micro_batch < MIN_EFFICIENT_MICRO_BATCH <= p.train_micro_batch
    assert off.peak_bytes["update"] <= off.usable_bytes


def test_8bit_moments_let_full_pi0_skip_checkpointing_on_an_80gb_gpu(checkpointing_policy):
    """Full pi0 with fp32 AdamW moments on an H100 (85 GB) fits a plain
    micro-batch of 5: the planner checkpoints and says what 8-bit moments
    would free; with them the update runs without recomputation."""
    from ript_core.plan import optimizer_state_bytes

    fp = PolicyFootprint.pi0(dtype_bytes=2, n_cameras=2)
    lean_fp = attrs.evolve(fp, optimizer_moments="8bit")
    # master (4 B) + two one-byte moments + a float32 scale per 256 values of each
    assert optimizer_state_bytes(lean_fp) == int(fp.n_trainable * (4 + 2 + 8 / 256))
    assert optimizer_state_bytes(fp) == fp.n_trainable * 12
    h100 = MachineSpec.gpu(85 * 10**9, 16, 128 * GB)
    toy = TOY
    fp32 = plan(h100, fp, toy, rollouts_per_update=64)
    lean = plan(h100, lean_fp, toy, rollouts_per_update=64)
    assert fp32.fits and lean.fits
    assert fp32.activation_checkpointing and not lean.activation_checkpointing
    assert MIN_EFFICIENT_MICRO_BATCH <= lean.train_micro_batch < fp32.train_micro_batch
    notes = [r for r in fp32.reasons if r.startswith("note: optim.moments: 8bit")]
    assert len(notes) == 1 and "would free 19.3 GB" in notes[0]
    assert not any("optim.moments" in r for r in lean.reasons)
    assert lean.peak_bytes["update"] <= lean.usable_bytes
    with pytest.raises(ValueError, match="optimizer_moments must be 'fp32' or '8bit'"):
        attrs.evolve(fp, optimizer_moments="4bit")


def test_detect_machine_counts_memory_torch_already_holds_as_free(monkeypatch):
    """The trainer plans with its policy already on the GPU: torch's own
    allocations (the weights, which a plan counts itself) and its cache
    (reusable) must not shrink the budget a second time."""
    import torch

    from ript_core import plan as planner

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (60 * GB, 80 * GB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda *a: 15 * GB)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "fake GPU")
    m = planner.detect_machine()
    assert m.device == "cuda" and m.device_total_bytes == 80 * GB
    assert m.device_free_bytes == 75 * GB


def test_a_chunk_pays_one_render_when_the_env_skips_unread_ones():
    skipping = attrs.evolve(LIBERO, unread_step_seconds=0.01)
    assert LIBERO.chunk_seconds(5) == pytest.approx(5 * 0.19)
    assert skipping.chunk_seconds(5) == pytest.approx(0.19 + 4 * 0.01)
    assert skipping.chunk_seconds(1) == pytest.approx(0.19)
    kw = dict(rollouts_per_update=16, replan_every=5)
    rendered = plan(GPU_80GB_16C, PolicyFootprint.pi0(), LIBERO, **kw)
    skipped = plan(GPU_80GB_16C, PolicyFootprint.pi0(), skipping, **kw)
    line = next(r for r in skipped.reasons if r.startswith("rollout schedule"))
    assert "5 env steps ≈ 230 ms per env" in line
    assert any(r.startswith("rollout schedule") and "≈ 950 ms" in r for r in rendered.reasons)
