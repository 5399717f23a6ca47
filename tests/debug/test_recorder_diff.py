"""Recorder -> diff round trips: identical runs diff clean, a perturbed stage is
the first divergence, mapping files line up recordings of other pipelines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ript_core.cli import main
from ript_core.debug import (
    Recording,
    StageMapping,
    diff_recordings,
    make_noise,
    record_inference,
)
from ript_core.debug.observation_files import save_observation
from ript_core.envs.interfaces import ComposedObservationAdapter
from ript_core.envs.toy.adapters import make_adapters, to_policy_fields
from ript_core.plugins import get_registry
from ript_core.policy import save_policy
from tests.debug.conftest import parity_inputs, parity_policy
from tests.debug.pi0_reference import RefConfig, ReferencePI0, convert_weights


def _text(capsys) -> str:
    """Captured stdout with rich's line wrapping undone."""
    return " ".join(capsys.readouterr().out.split())


@pytest.fixture(scope="module")
def toy_obs():
    env = get_registry().make_env("toy", "reach-red")
    obs, _ = env.reset(seed=3, options={"init_state": 2})
    env.close()
    return obs


def _tiny_for_toy(seed: int = 0, **overrides):
    return parity_policy(seed, action_dim=3, state_dim=3, **overrides)


def test_recording_has_every_stage_and_consistent_values(toy_obs, tmp_path):
    policy = _tiny_for_toy()
    obs_adapter, action_adapter = make_adapters()
    rec = record_inference(
        policy, toy_obs, obs_adapter=obs_adapter, action_adapter=action_adapter, seed=5
    )
    n = policy.num_steps
    for name in [
        "raw/images/agentview",
        "raw/state",
        "adapted/images/base_0_rgb",
        "input/token_ids",
        "input/pixel_values",
        "vision/layer_01",
        "vision/projector",
        "prefix/embeds",
        "vlm/layer_01",
        "vlm/norm",
        f"expert/step_{n - 1:02d}/layer_01",
        f"denoise/step_{n - 1:02d}/velocity",
        "actions/env",
    ]:
        assert name in rec, name
    # the raw obs and the metadata
    assert np.array_equal(rec["raw/images/agentview"], toy_obs["images"]["agentview"])
    assert (
        rec.meta["prompt"] == toy_obs["instruction"] == rec.meta["raw_strings"]["raw/instruction"]
    )
    assert rec.meta["versions"]["transformers"] and rec.meta["seed"] == 5
    # x_1 is seed 5's CPU normal draw; the time grid is 1 - k/N; the recorded
    # x_t and velocities satisfy the Euler recursion; x_0 is the output
    expected_noise = torch.randn(
        1, policy.chunk_size, policy.max_action_dim, generator=torch.Generator().manual_seed(5)
    )
    assert np.array_equal(rec["denoise/noise"], expected_noise.numpy())
    x = rec["denoise/noise"].astype(np.float64)
    for k in range(n):
        assert rec[f"denoise/step_{k:02d}/t"][0] == pytest.approx(1.0 - k / n, abs=1e-15)
        assert np.array_equal(rec[f"denoise/step_{k:02d}/x_t"], x.astype(np.float32))
        x = x.astype(np.float32) + np.float32(-1.0 / n) * rec[f"denoise/step_{k:02d}/velocity"]
    assert np.array_equal(rec["actions/normalized"], x)
    # identity stats: un-normalised = the first 3 dims; the toy adapter clips to [-1, 1]
    assert np.allclose(rec["actions/unnormalized"][0], x[0, :, :3], atol=1e-6)
    assert np.array_equal(rec["actions/env"], np.clip(rec["actions/unnormalized"][0], -1, 1))
    # one expert layer output per step, suffix = 1 state token + chunk action tokens
    assert rec["expert/step_00/layer_00"].shape == (1, policy.chunk_size + 1, 32)
    # a save/load round trip keeps names, order, values and metadata
    loaded = Recording.load(rec.save(tmp_path / "rec"))
    assert loaded.names == rec.names
    assert all(np.array_equal(loaded[k], rec[k]) for k in rec)
    assert loaded.meta["stage_dtypes"]["denoise/step_00/t"] == "float64"


def test_identical_runs_diff_clean_via_cli(tmp_path, capsys):
    common = ["--env", "toy/reach-red", "--init-state", "1", "--preset", "pi0-tiny"]
    assert (
        main(["record", str(tmp_path / "a"), *common, "--save-obs", str(tmp_path / "o.npz")]) == 0
    )
    # the second run replays the saved observation instead of the live env
    assert main(["record", str(tmp_path / "b"), *common, "--obs", str(tmp_path / "o.npz")]) == 0
    capsys.readouterr()
    assert (
        main(["diff", str(tmp_path / "a"), str(tmp_path / "b"), "--atol", "0", "--rtol", "0"]) == 0
    )
    out = _text(capsys)
    assert "no divergence" in out and "0 beyond tolerance" in out


def test_perturbed_weight_is_reported_as_first_divergence(tmp_path, capsys):
    """Perturb the expert's second layer: everything up to and including the
    first step's first expert layer agrees; the first divergence is
    ``expert/step_00/layer_01``; the actions differ."""
    inp = parity_inputs(0)[0]
    a = record_inference(_tiny_for_toy(), _toy_input(inp))
    policy = _tiny_for_toy()
    with torch.no_grad():
        policy.model.model.dit.layers[1].mlp.down_proj.weight[0, 0] += 1e-2
    b = record_inference(policy, _toy_input(inp))
    report = diff_recordings(a, b, atol=1e-6, rtol=0.0)
    first = report.first_divergence
    assert first is not None and first.name == "expert/step_00/layer_01"
    statuses = {r.name: r.status for r in report.rows}
    assert statuses["vlm/layer_01"] == statuses["expert/step_00/layer_00"] == "ok"
    assert statuses["actions/normalized"] == "DIVERGED"
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    assert main(["diff", str(tmp_path / "a"), str(tmp_path / "b"), "--atol", "1e-6"]) == 1
    assert "first divergence: expert/step_00/layer_01" in _text(capsys)


def test_image_orientation_bug_is_located_at_the_adapter(toy_obs):
    """A pipeline that forgets a 180-degree rotation diverges at the adapted
    image, before any model stage."""
    policy = _tiny_for_toy()
    obs_adapter, _ = make_adapters()

    def rotate(data):
        fields = to_policy_fields(data)
        fields["images"] = {
            k: np.ascontiguousarray(v[::-1, ::-1]) for k, v in fields["images"].items()
        }
        return fields

    rotated = ComposedObservationAdapter([rotate])
    a = record_inference(policy, toy_obs, obs_adapter=obs_adapter, layers=False)
    b = record_inference(policy, toy_obs, obs_adapter=rotated, layers=False)
    report = diff_recordings(a, b)
    assert report.first_divergence.name == "adapted/images/base_0_rgb"
    assert {r.name: r.status for r in report.rows}["raw/images/agentview"] == "ok"


def _toy_input(inp):
    """A parity input trimmed to the toy policy's 3-d state."""
    from ript_core.envs.interfaces import PolicyInput

    return PolicyInput(images=inp.images, state=inp.state[:3], prompt=inp.prompt)


# ---- mapping files: our recording vs the float64 openpi reference -------------------------

REFERENCE_MAP = """
stages:
  prefix/embeds: prefix_emb
  denoise/step_{k:int}/t: step{k}/t
  denoise/step_{k:int}/x_t: step{k}/x_t
  expert/step_{k:int}/suffix_embeds: step{k}/suffix_emb
  expert/step_{k:int}/layer_{l:int}: step{k}/layer{l}/e1
  denoise/step_{k:int}/velocity: step{k}/v_t
  actions/normalized: actions
tolerances:
  prefix/embeds: {atol: 1.0e-4}
  "expert/*": {atol: 1.0e-4}
  "denoise/*/velocity": {atol: 1.0e-4}
"""


def _reference_recording(policy, inp, noise) -> Recording:
    """What another implementation would write: its own stage names, a bare
    safetensors file (no meta.json)."""
    cfg = RefConfig.from_pi0_config(policy.model.config)
    ref = ReferencePI0(convert_weights(policy.model.state_dict(), cfg), cfg)
    batch = policy.preprocess([inp])
    images = (batch.images.double() / 255.0 * 2.0 - 1.0).permute(0, 1, 3, 4, 2)
    ref.sample_actions(
        images,
        batch.image_masks,
        batch.tokens,
        batch.token_masks,
        batch.state,
        noise,
        policy.num_steps,
    )
    return Recording({k: v for k, v in ref.trace.items()})


def _save_foreign(rec: Recording, path) -> None:
    from safetensors.numpy import save_file

    path.mkdir()
    save_file(rec.stages, str(path / "stages.safetensors"))


def test_mapping_lines_up_a_foreign_recording(tmp_path, capsys):
    policy = parity_policy(0)
    inp = parity_inputs(0)[0]
    noise = make_noise(policy, 11)
    ours = record_inference(policy, inp, noise=noise)
    ours.save(tmp_path / "ours")
    _save_foreign(_reference_recording(policy, inp, noise), tmp_path / "ref")
    (tmp_path / "map.yaml").write_text(REFERENCE_MAP)

    # without the mapping no stage name matches: a clear error, exit 2
    assert main(["diff", str(tmp_path / "ours"), str(tmp_path / "ref")]) == 2
    assert "--map" in _text(capsys)
    # with it every mapped stage agrees with the float64 reference
    args = [
        "diff",
        str(tmp_path / "ours"),
        str(tmp_path / "ref"),
        "--map",
        str(tmp_path / "map.yaml"),
    ]
    assert main(args) == 0
    out = _text(capsys)
    assert "no divergence" in out and "step3/v_t" in out
    mapping = StageMapping.load(tmp_path / "map.yaml")
    report = diff_recordings(
        Recording.load(tmp_path / "ours"), Recording.load(tmp_path / "ref"), mapping
    )
    compared = {r.name for r in report.compared}
    assert "expert/step_04/layer_01" in compared and "actions/normalized" in compared


def test_mapping_locates_a_time_embedding_divergence(monkeypatch):
    """The reference with cos/sin swapped (checklist B2): the diff names the
    action-time embedding of step 0 as the first divergence."""
    from tests.debug import pi0_reference as ref_mod

    policy = parity_policy(0)
    inp = parity_inputs(0)[0]
    noise = make_noise(policy, 11)
    ours = record_inference(policy, inp, noise=noise)
    original = ref_mod.posemb_sincos

    def cos_first(t, dim, lo, hi):
        emb = original(t, dim, lo, hi)
        return torch.cat([emb[:, dim // 2 :], emb[:, : dim // 2]], dim=-1)

    monkeypatch.setattr(ref_mod, "posemb_sincos", cos_first)
    theirs = _reference_recording(policy, inp, noise)
    mapping = StageMapping.from_dict(__import__("yaml").safe_load(REFERENCE_MAP))
    report = diff_recordings(ours, theirs, mapping)
    assert report.first_divergence.name == "expert/step_00/suffix_embeds"
    statuses = {r.name: r.status for r in report.rows}
    assert statuses["prefix/embeds"] == statuses["denoise/step_00/x_t"] == "ok"


def test_mapping_transpose_ignore_and_tolerance():
    a = Recording(
        {"img": np.arange(24.0).reshape(1, 2, 3, 4), "v/step_03": np.ones(3), "x": np.zeros(2)}
    )
    b = Recording(
        {
            "img_nhwc": np.arange(24.0).reshape(1, 2, 3, 4).transpose(0, 2, 3, 1),
            "v3": np.ones(3) + 1e-3,
            "x": np.ones(2),
        }
    )
    mapping = StageMapping.from_dict(
        {
            "stages": {
                "img": {"name": "img_nhwc", "transpose": [0, 3, 1, 2]},
                "v/step_{k:int}": "v{k}",
            },
            "ignore": ["x"],
            "tolerances": {"v/*": {"atol": 2e-3}},
        }
    )
    report = diff_recordings(a, b, mapping, atol=1e-6, rtol=0.0)
    status = {r.name: r.status for r in report.rows}
    assert status == {"img": "ok", "v/step_03": "ok", "x": "ignored"}
    assert report.ok
    # the per-stage tolerance is what let v/step_03 pass
    strict = diff_recordings(a, b, StageMapping.from_dict({"stages": {"v/step_{k:int}": "v{k}"}}))
    assert strict.first_divergence.name == "v/step_03"
    assert strict.first_divergence.max_abs == pytest.approx(1e-3)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"stage": {"a": "b"}}, "unknown top-level key"),
        ({"stages": {"a/{k}": "b/{j}"}}, "does not define"),
        ({"stages": {"a": {"nam": "b"}}}, "must map to a name"),
        ({"tolerances": {"a": 1e-3}}, "atol and/or rtol"),
    ],
)
def test_bad_mapping_files_are_explained(data, message):
    with pytest.raises(ValueError, match=message):
        StageMapping.from_dict(data)


def test_record_cli_rejects_bad_arguments(tmp_path, capsys):
    assert main(["record", str(tmp_path / "r"), "--env", "toy/reach-red"]) == 2
    assert "--checkpoint DIR or --preset NAME" in _text(capsys)
    assert main(["record", str(tmp_path / "r"), "--preset", "pi0-tiny"]) == 2
    assert "--env BACKEND/TASK" in _text(capsys)
    args = [
        "record",
        str(tmp_path / "r"),
        "--preset",
        "pi0-tiny",
        "--obs",
        str(tmp_path / "no.npz"),
    ]
    assert main(args) == 2
    assert "does not exist" in _text(capsys)
    np.save(tmp_path / "noise.npy", np.zeros((1, 10, 8), dtype=np.float64))
    args = ["record", str(tmp_path / "r"), "--preset", "pi0-tiny", "--env", "toy/reach-red"]
    assert main([*args, "--noise", str(tmp_path / "noise.npy")]) == 2
    assert "float32" in _text(capsys)
    assert main(["diff", str(tmp_path / "missing"), str(tmp_path / "r")]) == 2
    assert "no recording" in _text(capsys)


def test_sde_recordings_are_reproducible_and_keep_the_log_prob():
    policy = _tiny_for_toy()
    inp = _toy_input(parity_inputs(0)[0])
    a = record_inference(policy, inp, mode="sde", seed=3, layers=False)
    b = record_inference(policy, inp, mode="sde", seed=3, layers=False)
    assert diff_recordings(a, b, atol=0.0, rtol=0.0).ok
    assert a["actions/log_prob"].shape == (1,) and np.isfinite(a["actions/log_prob"]).all()
    # the SDE steps are not Euler steps: x_1 differs from x_0 + dt * v somewhere
    n = policy.num_steps
    euler = a["denoise/step_00/x_t"] + np.float32(-1.0 / n) * a["denoise/step_00/velocity"]
    assert not np.allclose(euler, a["denoise/step_01/x_t"], atol=1e-4)
    c = record_inference(policy, inp, mode="sde", seed=4, layers=False)
    assert diff_recordings(a, c).first_divergence.name == "denoise/noise"


def test_bf16_recording_diverges_first_at_the_model_pixels():
    """A precision hunt: bf16 vs fp32 of the same weights. Everything before the
    model agrees; the first difference is the bf16 rounding of the pixels."""
    inp = _toy_input(parity_inputs(0)[0])
    a = record_inference(_tiny_for_toy(), inp, layers=False)
    b = record_inference(_tiny_for_toy(dtype="bfloat16"), inp, layers=False)
    assert b.meta["stage_dtypes"]["input/pixel_values"] == "bfloat16"
    assert b["input/pixel_values"].dtype == np.float32  # stored widened, exactly
    report = diff_recordings(a, b, atol=1e-6, rtol=0.0)
    assert report.first_divergence.name == "input/pixel_values"
    assert {r.name: r.status for r in report.rows}["input/state"] == "ok"
    # the noise and the time grid stay float32 / float64 under bf16
    assert np.array_equal(a["denoise/noise"], b["denoise/noise"])
    assert np.array_equal(a["denoise/step_02/t"], b["denoise/step_02/t"])


def test_cli_recording_of_a_checkpoint_equals_the_python_api(tmp_path, toy_obs):
    """``ript record --checkpoint`` loads the saved policy and records the same
    stages, bit for bit, as ``record_inference`` on the in-memory policy."""
    policy = _tiny_for_toy()
    save_policy(policy, tmp_path / "ckpt")
    obs_adapter, action_adapter = make_adapters()
    ours = record_inference(
        policy, toy_obs, obs_adapter=obs_adapter, action_adapter=action_adapter, seed=2
    )
    save_observation(toy_obs, tmp_path / "obs.npz")
    args = ["--env", "toy/reach-red", "--obs", str(tmp_path / "obs.npz"), "--seed", "2"]
    assert (
        main(["record", str(tmp_path / "cli"), "--checkpoint", str(tmp_path / "ckpt"), *args]) == 0
    )
    cli = Recording.load(tmp_path / "cli")
    assert cli.meta["checkpoint"] == str(tmp_path / "ckpt")
    report = diff_recordings(ours, cli, atol=0.0, rtol=0.0)
    assert report.ok and len(report.compared) == len(ours)
