"""``ript diff`` against a dump made on openpi's side (docs/examples/openpi-dump),
and the fp32 parity guard of ``ript record``.

openpi itself is not installed here, so the dump is what
``docs/examples/openpi-dump/dump_openpi.py`` writes, computed in this test
from openpi's documented transforms (numpy and Pillow) -- independently of
ript's preprocessing -- and diffed through the shipped mapping file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ript_core.cli import main
from ript_core.debug import Recording, StageMapping, diff_recordings, record_inference
from ript_core.envs.interfaces import PolicyInput
from ript_core.policy import FeatureStats, NormStats
from ript_core.policy.io.pipeline import OPENPI_CONFIGS
from tests.debug.conftest import parity_policy

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "openpi-dump"
MEAN = np.array([-0.05, 0.03, 1.0, 3.0, -0.1, 0.05, 0.03, -0.03])
STD = np.array([0.1, 0.15, 0.12, 0.5, 0.4, 0.3, 0.01, 0.01])
A_MEAN = np.array([0.026, 0.084, -0.095, 0.004, -0.005, -0.007, -0.04])
A_STD = np.array([0.33, 0.38, 0.44, 0.040, 0.061, 0.078, 1.0])
PROMPT = " put the black_bowl on the plate"


def openpi_policy():
    stats = NormStats(FeatureStats(MEAN, STD), FeatureStats(A_MEAN, A_STD), eps=1e-6)
    policy = parity_policy(
        seed=3,
        cameras=["base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb"],
        pipeline=OPENPI_CONFIGS["pi0_libero"].pipeline,
        image_size=224,
    )
    policy.set_stats(stats)
    return policy


def observation() -> PolicyInput:
    rng = np.random.default_rng(7)
    return PolicyInput(
        images={
            "base_0_rgb": rng.integers(0, 256, (256, 256, 3), dtype=np.uint8),
            "left_wrist_0_rgb": rng.integers(0, 256, (256, 256, 3), dtype=np.uint8),
        },
        state=MEAN + rng.normal(0, 1, 8) * STD,
        prompt=PROMPT,
    )


def openpi_dump(
    rec: Recording, policy, inp: PolicyInput, delta: bool = True
) -> dict[str, np.ndarray]:
    """What dump_openpi.py writes for ``inp``, from openpi's conventions
    (``delta=False``: as if the config had no extra delta transform)."""

    def resize(img):  # openpi_client.image_tools.resize_with_pad, 256 -> 224
        return np.asarray(Image.fromarray(img).resize((224, 224), resample=Image.BILINEAR))

    tok = policy.tokenizer
    clean = PROMPT.strip().replace("_", " ")
    ids = [tok.bos_id, *tok.encode(clean), *tok.encode("\n")]
    n = policy.arch.max_token_len
    state = np.pad((inp.state - MEAN) / (STD + 1e-6), (0, policy.max_state_dim - 8))
    # the model output is ours (no openpi model here); the output transforms are openpi's
    y = rec["actions/normalized"][0].astype(np.float64)
    un_state = state.astype(np.float32).astype(np.float64) * (
        np.pad(STD, (0, policy.max_state_dim - 8), constant_values=1.0) + 1e-6
    ) + np.pad(MEAN, (0, policy.max_state_dim - 8))
    actions = y[:, :7] * (A_STD + 1e-6) + A_MEAN
    if delta:
        actions[:, :6] += un_state[:6]
    base = resize(inp.images["base_0_rgb"])
    return {
        "noise": rec["denoise/noise"][0],
        "outputs/actions": actions,
        "inputs/state": state,
        "inputs/image/base_0_rgb": base,
        "inputs/image/left_wrist_0_rgb": resize(inp.images["left_wrist_0_rgb"]),
        "inputs/image/right_wrist_0_rgb": np.zeros_like(base),
        "inputs/image_mask/base_0_rgb": np.bool_(True),
        "inputs/image_mask/left_wrist_0_rgb": np.bool_(True),
        "inputs/image_mask/right_wrist_0_rgb": np.bool_(False),
        "inputs/tokenized_prompt": np.array(ids + [0] * (n - len(ids))),
        "inputs/tokenized_prompt_mask": np.array([True] * len(ids) + [False] * (n - len(ids))),
    }


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    policy, inp = openpi_policy(), observation()
    rec = record_inference(policy, inp, seed=0, layers=False)
    out = tmp_path_factory.mktemp("rec") / "ours"
    rec.save(out)
    return out, rec, openpi_dump(rec, policy, inp), openpi_dump(rec, policy, inp, delta=False)


def _text(capsys) -> str:
    return " ".join(capsys.readouterr().out.split())


def test_recording_has_the_delta_stages(recorded):
    _, rec, _, _ = recorded
    delta = rec["actions/absolute"][0, :, :6] - rec["actions/unnormalized"][0, :, :6]
    np.testing.assert_allclose(
        delta, np.tile(rec["actions/delta_state"][0, :6], (10, 1)), atol=2e-6
    )
    assert rec.meta["pipeline"]["delta_action_mask"] == [True] * 6 + [False]


def test_diff_accepts_an_openpi_npz_dump_through_the_shipped_mapping(recorded, tmp_path, capsys):
    out, _, dump, no_delta = recorded
    np.savez(tmp_path / "openpi.npz", **dump)
    args = [
        "diff",
        str(out),
        str(tmp_path / "openpi.npz"),
        "--map",
        str(EXAMPLE / "openpi_map.yaml"),
    ]
    assert main(args) == 0
    text = _text(capsys)
    assert "no divergence" in text
    assert "0 beyond tolerance" in text
    # every mapped stage was compared: 3 images + 3 masks + tokens + mask + state + noise + actions
    report = diff_recordings(
        Recording.load(out),
        Recording.load(tmp_path / "openpi.npz"),
        StageMapping.load(EXAMPLE / "openpi_map.yaml"),
    )
    assert len(report.compared) == 11

    # the same dump without openpi's extra delta transform: the outputs diverge
    np.savez(tmp_path / "nodelta.npz", **no_delta)
    mapping = str(EXAMPLE / "openpi_map.yaml")
    assert main(["diff", str(out), str(tmp_path / "nodelta.npz"), "--map", mapping]) == 1
    assert "first divergence: actions/absolute" in _text(capsys)


def test_diff_accepts_a_json_dump_and_names_a_prompt_divergence(recorded, tmp_path, capsys):
    out, _, dump, _ = recorded
    nested: dict = {}
    for key, value in dump.items():
        node = nested
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = np.asarray(value).tolist()
    nested["inputs"]["prompt_text"] = PROMPT  # strings go to the metadata
    # one token off (e.g. a prompt that was not stripped): named at the token stage
    bad = json.loads(json.dumps(nested))
    bad["inputs"]["tokenized_prompt"][3] += 1
    (tmp_path / "openpi.json").write_text(json.dumps(nested))
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    mapping = str(EXAMPLE / "openpi_map.yaml")
    assert main(["diff", str(out), str(tmp_path / "openpi.json"), "--map", mapping]) == 0
    assert Recording.load(tmp_path / "openpi.json").meta["inputs/prompt_text"] == PROMPT
    assert main(["diff", str(out), str(tmp_path / "bad.json"), "--map", mapping]) == 1
    assert "first divergence: input/token_ids" in _text(capsys)
    (tmp_path / "broken.json").write_text("{not json")
    assert main(["diff", str(out), str(tmp_path / "broken.json"), "--map", mapping]) == 2
    assert "is not valid JSON" in _text(capsys)


def test_fp32_recording_refuses_tf32():
    policy, inp = openpi_policy(), observation()
    torch.set_float32_matmul_precision("high")
    try:
        with pytest.raises(RuntimeError, match="TF32 is on"):
            record_inference(policy, inp, layers=False)
        rec = record_inference(policy, inp, layers=False, allow_tf32=True)
        assert rec.meta["float32_matmul_precision"] == "high"
    finally:
        torch.set_float32_matmul_precision("highest")
