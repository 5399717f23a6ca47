"""Checkpoint-carried transforms: golden values per transform, computed here
independently (numpy, Pillow, sentencepiece), and their trip through a saved
checkpoint (issue 11)."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest
import sentencepiece as spm
import torch
from PIL import Image
from safetensors.torch import save_file

from ript_core.cli import main
from ript_core.envs.interfaces import (
    ComposedActionAdapter,
    PolicyInput,
    clip_actions,
    slice_action_dims,
)
from ript_core.policy import CheckpointError, FeatureStats, NormStats, PI0Policy, load_policy
from ript_core.policy.images import resize_with_pad
from ript_core.policy.io import checkpoint as checkpoint_module
from ript_core.policy.io.pipeline import (
    OPENPI_CONFIGS,
    CameraSlot,
    Pipeline,
    make_bool_mask,
    openpi_config,
)
from ript_core.policy.io.tokenizer import load_tokenizer, tokenize_prompt, tokenize_prompts
from tests.policy.test_checkpoint import openpi_keys

# LIBERO-like stats: 8-d state (eef pos, axis-angle, gripper qpos), 7-d actions
STATE_MEAN = [-0.046, 0.034, 0.764, 2.97, -0.22, -0.11, 0.027, -0.027]
STATE_STD = [0.105, 0.151, 0.385, 0.344, 0.907, 0.325, 0.0141, 0.0141]
ACTION_MEAN = [0.063, 0.087, -0.099, 0.0057, 0.0036, -0.0066, -0.1]
ACTION_STD = [0.335, 0.377, 0.444, 0.040, 0.064, 0.078, 0.993]
LIBERO_STATS = NormStats(
    state=FeatureStats(mean=STATE_MEAN, std=STATE_STD),
    actions=FeatureStats(mean=ACTION_MEAN, std=ACTION_STD),
    eps=1e-6,
    source="test",
)
THREE_CAMERAS = ["base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb"]
LIBERO_PROMPTS = [
    "put the black bowl in the bottom drawer of the cabinet and close it",
    "  pick up the alphabet soup and place it in the basket\n",
    "KITCHEN_SCENE3_turn_on_the_stove_and_put_the_moka_pot_on_it",
    "open the top drawer and put the bowl inside",
]


def libero_pipeline_policy(seed: int = 0, **overrides) -> PI0Policy:
    """pi0-tiny with openpi pi0_libero's transforms and three camera slots."""
    kwargs = {"cameras": THREE_CAMERAS, "state_dim": 8, "action_dim": 7}
    kwargs.update(overrides)
    return PI0Policy.from_preset(
        "pi0-tiny",
        prompts=LIBERO_PROMPTS,
        stats=LIBERO_STATS,
        seed=seed,
        pipeline=OPENPI_CONFIGS["pi0_libero"].pipeline,
        **kwargs,
    )


def libero_input(seed: int = 0) -> PolicyInput:
    rng = np.random.default_rng(seed)
    # a LIBERO state as openpi's client builds it: float64
    state = np.array([-0.21, 0.08, 1.13, 3.05, -0.31, 0.12, 0.0391, -0.0387]) + rng.normal(
        0, 0.01, 8
    )
    return PolicyInput(
        images={
            "base_0_rgb": rng.integers(0, 256, (256, 256, 3), dtype=np.uint8),
            "left_wrist_0_rgb": rng.integers(0, 256, (256, 256, 3), dtype=np.uint8),
        },
        state=state,
        prompt=LIBERO_PROMPTS[seed % len(LIBERO_PROMPTS)],
    )


def openpi_output_transforms(normalized_actions: np.ndarray, model_state: np.ndarray) -> np.ndarray:
    """openpi's output transforms for pi0_libero, in numpy: ``Unnormalize``
    (both keys, eps 1e-6, stats padded with mean 0 / std 1) -> ``AbsoluteActions
    (make_bool_mask(6, -1))`` -> ``LiberoOutputs`` (first 7 dims)."""
    mean_s = np.pad(np.array(STATE_MEAN), (0, model_state.shape[-1] - 8))
    std_s = np.pad(np.array(STATE_STD), (0, model_state.shape[-1] - 8), constant_values=1.0)
    mean_a = np.pad(np.array(ACTION_MEAN), (0, normalized_actions.shape[-1] - 7))
    std_a = np.pad(np.array(ACTION_STD), (0, normalized_actions.shape[-1] - 7), constant_values=1.0)
    state = model_state * (std_s + 1e-6) + mean_s
    actions = normalized_actions * (std_a + 1e-6) + mean_a
    mask = np.array([True] * 6 + [False])
    actions[..., :7] += np.expand_dims(np.where(mask, state[..., :7], 0), axis=-2)
    return actions[..., :7]


# ---- delta -> absolute ------------------------------------------------------------------


def test_delta_to_absolute_adds_the_unnormalised_state_but_not_to_the_gripper():
    policy = libero_pipeline_policy()
    inp = libero_input()
    batch = policy.preprocess([inp])
    # openpi's Normalize on the float64 state, cast to the float32 model input
    expected_state = ((inp.state - STATE_MEAN) / (np.array(STATE_STD) + 1e-6)).astype(np.float32)
    np.testing.assert_array_equal(batch.state[0, :8].numpy(), expected_state)
    assert (batch.state[0, 8:] == 0).all()

    normalized = torch.randn(
        1, policy.chunk_size, policy.max_action_dim, generator=torch.Generator().manual_seed(3)
    )
    out = policy.postprocess(normalized, batch)
    ref = openpi_output_transforms(
        normalized.numpy().astype(np.float64), batch.state.numpy().astype(np.float64)
    )
    assert out.shape == (1, policy.chunk_size, 7) and out.dtype == np.float32
    np.testing.assert_array_equal(out, ref.astype(np.float32))
    # the delta is the (round-tripped) state; the gripper column is plain un-normalisation
    plain = (
        normalized.numpy()[..., :7].astype(np.float64) * (np.array(ACTION_STD) + 1e-6) + ACTION_MEAN
    )
    np.testing.assert_allclose(
        out[0, :, :6] - plain[0, :, :6], np.tile(inp.state[:6], (10, 1)), atol=2e-6
    )
    np.testing.assert_allclose(out[0, :, 6], plain[0, :, 6], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"call postprocess\(actions, batch\)"):
        policy.postprocess(normalized)


def test_delta_mask_longer_than_the_stats_is_refused():
    with pytest.raises(ValueError, match="delta_action_mask covers 7 dims"):
        PI0Policy.from_preset(
            "pi0-tiny",
            action_dim=3,
            state_dim=3,
            pipeline=Pipeline(delta_action_mask=make_bool_mask(6, -1)),
        )


# ---- normalisation eps ----------------------------------------------------------------------


def test_zscore_eps_1e6_vs_1e8_on_a_tiny_std_dimension():
    mean, std = np.array([0.5, 0.02]), np.array([2.0, 1e-7])  # dim 1: a gripper that never moved
    x = np.array([[1.5, 0.0200004]])
    openpi = NormStats(FeatureStats(mean, std), FeatureStats(mean, std), eps=1e-6)
    lerobot = NormStats(
        FeatureStats(mean, std), FeatureStats(mean, std), eps=1e-8, convention="lerobot"
    )
    y6 = openpi.normalize(torch.from_numpy(x), "state", dtype=torch.float64).numpy()
    y8 = lerobot.normalize(torch.from_numpy(x), "state", dtype=torch.float64).numpy()
    np.testing.assert_array_equal(y6, (x - mean) / (std + 1e-6))
    np.testing.assert_array_equal(y8, (x - mean) / (std + 1e-8))
    assert abs(y6[0, 0] - y8[0, 0]) < 1e-6  # a normal std barely notices
    assert y8[0, 1] > 8 * y6[0, 1]  # the tiny one: 3.96 vs 0.36
    # the inverses: openpi keeps eps, lerobot drops it (so its round trip is not exact)
    y = np.array([[0.3, 1.0]])
    u6 = openpi.unnormalize(torch.from_numpy(y), "actions", dtype=torch.float64).numpy()
    u8 = lerobot.unnormalize(torch.from_numpy(y), "actions", dtype=torch.float64).numpy()
    np.testing.assert_array_equal(u6, y * (std + 1e-6) + mean)
    np.testing.assert_array_equal(u8, y * std + mean)
    back = lerobot.unnormalize(torch.from_numpy(y8), "state", dtype=torch.float64).numpy()
    assert abs(back[0, 1] - x[0, 1]) > 1e-9


# ---- resize ------------------------------------------------------------------------------------


def openpi_resize_with_pad(img: np.ndarray, size: int) -> np.ndarray:
    """openpi_client.image_tools.resize_with_pad for one HxWx3 uint8 image."""
    image = Image.fromarray(img)
    cur_w, cur_h = image.size
    if (cur_w, cur_h) == (size, size):
        return img
    ratio = max(cur_w / size, cur_h / size)
    h, w = int(cur_h / ratio), int(cur_w / ratio)
    resized = image.resize((w, h), resample=Image.BILINEAR)
    canvas = Image.new(resized.mode, (size, size), 0)
    canvas.paste(resized, (max(0, int((size - w) / 2)), max(0, int((size - h) / 2))))
    return np.asarray(canvas)


@pytest.mark.parametrize("shape", [(256, 256), (480, 640), (200, 90)])
def test_pil_resize_is_bit_exact_with_openpis_client(shape):
    rng = np.random.default_rng(sum(shape))
    images = rng.integers(0, 256, (3, *shape, 3), dtype=np.uint8)
    ours = resize_with_pad(images, 224, "pil").permute(0, 2, 3, 1).numpy()
    for i in range(3):
        np.testing.assert_array_equal(ours[i], openpi_resize_with_pad(images[i], 224))
    # the fast path is not bit-exact: one grey level at most, on noise frames
    fast = resize_with_pad(images, 224, "torch").permute(0, 2, 3, 1).numpy()
    diff = np.abs(fast.astype(int) - ours.astype(int))
    assert diff.max() == 1 and 0.05 < (diff > 0).mean() < 0.5


def numpy_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear sampling with half-pixel centres and no antialiasing (what
    ``F.interpolate(align_corners=False)`` and lerobot's resize do), float64."""
    h, w = img.shape[:2]

    def coords(n_out: int, n_in: int):
        src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, None)
        lo = np.minimum(np.floor(src).astype(int), n_in - 1)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo

    y0, y1, fy = coords(out_h, h)
    x0, x1, fx = coords(out_w, w)
    x = img.astype(np.float64)
    top = x[y0][:, x0] * (1 - fx)[None, :, None] + x[y0][:, x1] * fx[None, :, None]
    bot = x[y1][:, x0] * (1 - fx)[None, :, None] + x[y1][:, x1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bot * fy[:, None, None]


def test_torch_plain_is_lerobots_bilinear_without_antialiasing():
    img = np.random.default_rng(3).integers(0, 256, (1, 256, 192, 3), dtype=np.uint8)
    ours = resize_with_pad(img, 224, "torch_plain").permute(0, 2, 3, 1).numpy()[0]
    ref = numpy_bilinear(img[0], 224, 168)  # 256x192 -> 224x168, padded 28 left/right
    inner = ours[:, 28 : 28 + 168].astype(np.float64)
    assert np.abs(inner - ref).max() <= 0.5 + 1e-3  # rounded to uint8, lerobot keeps floats
    assert (ours[:, :28] == 0).all() and (ours[:, 196:] == 0).all()


def test_preprocess_uses_the_pipelines_resampler():
    policy = libero_pipeline_policy(image_size=224)
    inp = libero_input()
    batch = policy.preprocess([inp])
    assert batch.image_masks[0].tolist() == [True, True, False]  # right wrist: masked
    np.testing.assert_array_equal(
        batch.images[0, 0].permute(1, 2, 0).numpy(),
        openpi_resize_with_pad(inp.images["base_0_rgb"], 224),
    )
    assert (batch.images[0, 2] == 0).all()


# ---- tokenisation ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sp_dir(tmp_path_factory):
    """A tiny sentencepiece model trained here on LIBERO-style instructions."""
    words = " ".join(LIBERO_PROMPTS).replace("_", " ").split()
    corpus = [" ".join(words[i : i + 9]) for i in range(len(words))] * 10
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=model,
        vocab_size=120,
        minloglevel=2,
        user_defined_symbols=["\n"],
        remove_extra_whitespaces=False,
        hard_vocab_limit=False,
    )
    out = tmp_path_factory.mktemp("sp")
    (out / "tokenizer.model").write_bytes(model.getvalue())
    return out


def test_openpi_and_joint_token_ids_and_masks(sp_dir):
    tok = load_tokenizer(sp_dir)
    sp = spm.SentencePieceProcessor(model_file=str(sp_dir / "tokenizer.model"))
    differ = 0
    for prompt in LIBERO_PROMPTS:
        # openpi PaligemmaTokenizer.tokenize
        clean = prompt.strip().replace("_", " ").replace("\n", " ")
        want = sp.encode(clean, add_bos=True) + sp.encode("\n")
        ids, mask = tokenize_prompt(tok, prompt, 48, "openpi")
        assert ids == want + [0] * (48 - len(want))
        assert mask == [True] * len(want) + [False] * (48 - len(want))
        # lerobot/transformers: "\n" appended (once), tokenised jointly, no cleaning
        text = prompt if prompt.endswith("\n") else prompt + "\n"
        joint = sp.encode(text, add_bos=True)[:48]
        jids, jmask = tokenize_prompt(tok, prompt, 48, "joint")
        assert jids == joint + [0] * (48 - len(joint)) and sum(jmask) == len(joint)
        differ += jids != ids
    assert differ >= 2  # the underscore and whitespace prompts at least
    batch_ids, batch_mask = tokenize_prompts(tok, LIBERO_PROMPTS, 48, "openpi")
    assert batch_ids.shape == (4, 48) and batch_mask.dtype == torch.bool


def test_truncation_to_max_len_warns(sp_dir, caplog):
    tok = load_tokenizer(sp_dir)
    sp = spm.SentencePieceProcessor(model_file=str(sp_dir / "tokenizer.model"))
    prompt = LIBERO_PROMPTS[0]
    full = sp.encode(prompt, add_bos=True) + sp.encode("\n")
    with caplog.at_level(logging.WARNING):
        ids, mask = tokenize_prompt(tok, prompt, 6, "openpi")
    assert ids == full[:6] and mask == [True] * 6
    assert f"prompt of {len(full)} tokens truncated to max_token_len=6" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        tokenize_prompt(tok, prompt, len(full), "openpi")  # exactly full: no warning
    assert caplog.text == ""


# ---- the pipeline travels with the checkpoint --------------------------------------------------------


def env_actions(policy: PI0Policy, seed: int = 0) -> np.ndarray:
    inputs = [libero_input(0), libero_input(1)]
    batch = policy.preprocess(inputs)
    noise = torch.randn(
        2, policy.chunk_size, policy.max_action_dim, generator=torch.Generator().manual_seed(seed)
    )
    out = policy.sample(batch, "ode", noise=noise)
    adapter = ComposedActionAdapter([slice_action_dims(7), clip_actions(-np.ones(7), np.ones(7))])
    return np.stack([adapter(chunk) for chunk in policy.postprocess(out.actions, batch)])


def test_saved_pi0_libero_pipeline_reloads_identically(tmp_path):
    from ript_core.policy import save_policy

    source = libero_pipeline_policy(seed=5)
    save_policy(source, tmp_path)
    saved = json.loads((tmp_path / "pipeline.json").read_text())
    assert saved["delta_action_mask"] == [True] * 6 + [False] and saved["resize"] == "pil"
    loaded = load_policy(tmp_path)
    assert loaded.pipeline == source.pipeline == openpi_config("pi0_libero").pipeline
    assert loaded.stats == source.stats
    a, b = env_actions(source), env_actions(loaded)
    np.testing.assert_array_equal(a, b)
    # and the delta is really in those actions: without it they differ by ~the state
    plain = load_policy(tmp_path, pipeline=Pipeline(resize="pil", cameras=source.pipeline.cameras))
    assert np.abs(env_actions(plain) - a)[..., :6].max() > 0.05


def test_checkpoint_without_stats_fails_before_reading_weights(tmp_path, monkeypatch):
    from ript_core.policy import save_policy

    save_policy(libero_pipeline_policy(), tmp_path)
    (tmp_path / "stats.json").unlink()

    def no_weights(_directory):
        raise AssertionError("weights were read before the stats were checked")

    monkeypatch.setattr(checkpoint_module, "read_safetensors", no_weights)
    with pytest.raises(
        CheckpointError, match=r"no normalisation stats found \(expected stats.json"
    ):
        load_policy(tmp_path)


def write_openpi_checkpoint(policy: PI0Policy, directory) -> None:
    """An openpi PyTorch checkpoint as openpi's converter writes it."""
    directory.mkdir(exist_ok=True)
    save_file(openpi_keys(policy.model.state_dict()), str(directory / "model.safetensors"))
    (directory / "config.json").write_text(
        json.dumps({"action_dim": 8, "action_horizon": 10, "paligemma_variant": "gemma_2b"})
    )
    assets = directory / "assets" / "physical-intelligence" / "libero"
    assets.mkdir(parents=True)
    stats = LIBERO_STATS.to_dict()
    norm = {
        k: {s: stats[k][s] for s in ("mean", "std", "q01", "q99")} for k in ("state", "actions")
    }
    (assets / "norm_stats.json").write_text(json.dumps({"norm_stats": norm}))
    policy.tokenizer.save(directory)


def test_openpi_checkpoint_imports_its_configs_pipeline(tmp_path):
    source = libero_pipeline_policy(seed=2)
    write_openpi_checkpoint(source, tmp_path)
    with pytest.raises(CheckpointError, match="does not record its training config"):
        load_policy(tmp_path, preset="pi0-tiny")
    with pytest.raises(CheckpointError, match="pi0.5"):
        load_policy(tmp_path, preset="pi0-tiny", openpi_config="pi05_libero")
    with pytest.raises(CheckpointError, match="unknown openpi config 'pi0_droid'"):
        load_policy(tmp_path, preset="pi0-tiny", openpi_config="pi0_droid")
    loaded = load_policy(tmp_path, preset="pi0-tiny", openpi_config="pi0_libero")
    assert loaded.pipeline.origin == "openpi:pi0_libero"
    assert loaded.pipeline.camera_slots(loaded.arch.cameras)[2] == CameraSlot("right_wrist_0_rgb")
    assert loaded.stats.eps == 1e-6 and loaded.stats.state.mean == STATE_MEAN
    assert loaded.stats.source.endswith("physical-intelligence/libero/norm_stats.json")
    # env actions = openpi's output transforms on the model's output, computed here
    batch = loaded.preprocess([libero_input(3)])
    noise = torch.randn(1, 10, 8, generator=torch.Generator().manual_seed(1))
    out = loaded.sample(batch, "ode", noise=noise)
    ref = openpi_output_transforms(
        out.actions.numpy().astype(np.float64), batch.state.numpy().astype(np.float64)
    )
    np.testing.assert_array_equal(loaded.postprocess(out.actions, batch), ref.astype(np.float32))
    np.testing.assert_array_equal(env_actions(loaded), env_actions(source))


def test_convert_makes_an_openpi_checkpoint_a_ript_one(tmp_path, capsys):
    source = libero_pipeline_policy(seed=2)
    write_openpi_checkpoint(source, tmp_path / "openpi")
    args = ["convert", str(tmp_path / "openpi"), str(tmp_path / "ript"), "--preset", "pi0-tiny"]
    assert main(args) == 2  # no config name: refused, nothing written
    assert "does not record its training config" in capsys.readouterr().out
    assert not (tmp_path / "ript").exists()
    assert main([*args, "--openpi-config", "pi0_libero"]) == 0
    converted = load_policy(tmp_path / "ript")  # no openpi_config needed any more
    assert converted.pipeline == OPENPI_CONFIGS["pi0_libero"].pipeline
    np.testing.assert_array_equal(env_actions(converted), env_actions(source))


def test_ript_info_prints_the_resolved_pipeline(tmp_path, capsys):
    write_openpi_checkpoint(libero_pipeline_policy(), tmp_path)
    assert main(["info", str(tmp_path), "--preset", "pi0-tiny"]) == 2
    assert "pass openpi_config=NAME" in capsys.readouterr().out
    assert (
        main(["info", str(tmp_path), "--preset", "pi0-tiny", "--openpi-config", "pi0_libero"]) == 0
    )
    out = capsys.readouterr().out
    for text in (
        "openpi layout, pipeline from openpi:pi0_libero",
        "resize pil",
        "slot right_wrist_0_rgb <- input 'right_wrist_0_rgb', missing: mask",
        "prompt: openpi format, 16 tokens",
        "state: 8 dims, normalise, then zero-pad to 8",
        "delta->absolute: after un-normalising, action[:7] += un-normalised model-input state "
        "where mask=[1, 1, 1, 1, 1, 1, 0]",
        "normalisation: mean_std, eps 1e-06, openpi convention",
        "state mean [-0.046, 0.034, 0.764, 2.97, -0.22, -0.11, 0.027, -0.027]",
    ):
        assert text in out, text
    assert (
        main(
            [
                "info",
                str(tmp_path),
                "--preset",
                "pi0-tiny",
                "--openpi-config",
                "pi0_libero",
                "--json",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["actions"]["dim"] == 7 and data["images"]["resize"] == "pil"


def test_bad_pipeline_data_is_named():
    with pytest.raises(ValueError, match="unknown pipeline key"):
        Pipeline.from_dict({"resize": "pil", "resample": "bilinear"})
    with pytest.raises(ValueError, match="resize must be one of"):
        Pipeline(resize="bicubic")
    with pytest.raises(ValueError, match="if_missing must be one of"):
        Pipeline(cameras=[{"name": "a", "if_missing": "skip"}])
    with pytest.raises(ValueError, match="differ from the model's"):
        PI0Policy.from_preset("pi0-tiny", pipeline=Pipeline(cameras=["base_0_rgb"]))
    with pytest.raises(KeyError, match="requires"):
        policy = PI0Policy.from_preset(
            "pi0-tiny",
            state_dim=8,
            pipeline=Pipeline(
                cameras=["base_0_rgb", {"name": "left_wrist_0_rgb", "if_missing": "error"}]
            ),
        )
        policy.preprocess(
            [PolicyInput({"base_0_rgb": np.zeros((8, 8, 3), np.uint8)}, np.zeros(8), "x")]
        )


def test_noise_must_be_float32(policy):
    from tests.policy.conftest import make_inputs

    batch = policy.preprocess(make_inputs(1))
    with pytest.raises(ValueError, match="noise must be float32"):
        policy.sample(batch, "ode", noise=torch.zeros(1, 10, 8, dtype=torch.bfloat16))
