"""Golden pipeline tests for a LIBERO-style observation.

The raw observation is built here in numpy (robosuite names: 256x256
``agentview_image`` and ``robot0_eye_in_hand_image``, ``robot0_eef_pos``,
``robot0_eef_quat`` as x, y, z, w, ``robot0_gripper_qpos``). Each stage of
the pipeline is asserted against values computed independently in the test:

- the env half follows openpi's LIBERO client (``examples/libero/main.py``):
  180-degree rotation of both cameras, state = eef_pos ++ quat2axisangle ++
  gripper_qpos. ript-core has no LIBERO code (the plugin owns it, and these
  tests do not import the plugin), so the two conventions are written here
  as the *reference* and checked against independent maths (pixel
  coordinates; a rotation-matrix logarithm);
- the checkpoint half is ript-core's own: resize-with-pad (vs PIL bilinear and
  hand-computed padding geometry), [-1, 1] scaling, token ids of a known
  prompt (literal golden ids), state normalisation and padding, action
  un-normalisation, and the raw state kept with the batch (openpi's
  ``pi0_libero`` delta is tested in tests/policy/test_pipeline.py);
- the recorder ties it together: the same stages as recorded.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from ript_core.debug import record_inference
from ript_core.envs.interfaces import (
    ComposedActionAdapter,
    ComposedObservationAdapter,
    clip_actions,
    slice_action_dims,
)
from ript_core.policy import FeatureStats, NormStats, PI0Policy, build_word_tokenizer
from ript_core.policy.images import resize_with_pad

PROMPT = "  put the black_bowl on\nthe plate "
STATE_MEAN = [-0.05, 0.03, 1.0, 3.0, -0.1, 0.05, 0.03, -0.03]
STATE_STD = [0.1, 0.15, 0.12, 0.5, 0.4, 0.3, 0.01, 0.01]
ACTION_MEAN = [0.026, 0.084, -0.095, 0.004, -0.005, -0.007, -0.04]
ACTION_STD = [0.33, 0.38, 0.44, 0.040, 0.061, 0.078, 1.0]


# ---- openpi's LIBERO conventions (the reference for a LIBERO plugin) -----------------


def openpi_quat2axisangle(quat: np.ndarray) -> np.ndarray:
    """openpi ``examples/libero/main.py::_quat2axisangle`` (robosuite's):
    ``quat`` x, y, z, w; w clipped to [-1, 1]; zeros for the identity."""
    q = np.array(quat, dtype=np.float64)
    q[3] = min(max(q[3], -1.0), 1.0)
    den = math.sqrt(1.0 - q[3] * q[3])
    if math.isclose(den, 0.0):
        return np.zeros(3)
    return q[:3] * 2.0 * math.acos(q[3]) / den


def libero_to_policy(obs: dict) -> dict:
    """openpi's client: both cameras rotated 180 degrees, 8-D state."""
    return {
        "images": {
            "base_0_rgb": np.ascontiguousarray(obs["agentview_image"][::-1, ::-1]),
            "left_wrist_0_rgb": np.ascontiguousarray(obs["robot0_eye_in_hand_image"][::-1, ::-1]),
        },
        "state": np.concatenate(
            [
                obs["robot0_eef_pos"],
                openpi_quat2axisangle(obs["robot0_eef_quat"]),
                obs["robot0_gripper_qpos"],
            ]
        ),
        "prompt": obs["task"],
    }


def rotation_matrix(quat_xyzw: np.ndarray) -> np.ndarray:
    x, y, z, w = np.asarray(quat_xyzw, dtype=np.float64) / np.linalg.norm(quat_xyzw)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_log(r: np.ndarray) -> np.ndarray:
    """Axis-angle of a rotation matrix, angle in [0, pi] (independent of quaternions)."""
    angle = math.acos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))
    if angle < 1e-12:
        return np.zeros(3)
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    return axis / (2.0 * math.sin(angle)) * angle


def raw_observation(seed: int = 0, quat=(0.3, -0.2, 0.1, 0.927)) -> dict:
    rng = np.random.default_rng(seed)
    agent = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    agent[10, 20] = (255, 0, 0)  # markers for the rotation check
    wrist = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    wrist[0, 0] = (0, 0, 255)
    quat = np.asarray(quat, dtype=np.float64)
    return {
        "agentview_image": agent,
        "robot0_eye_in_hand_image": wrist,
        "robot0_eef_pos": np.array([-0.1, 0.05, 1.1]),
        "robot0_eef_quat": quat / np.linalg.norm(quat),
        "robot0_gripper_qpos": np.array([0.035, -0.035]),
        "task": PROMPT,
    }


def libero_stats() -> NormStats:
    return NormStats(
        state=FeatureStats(mean=STATE_MEAN, std=STATE_STD),
        actions=FeatureStats(mean=ACTION_MEAN, std=ACTION_STD),
        eps=1e-6,
    )


def libero_policy(**overrides) -> PI0Policy:
    tok = build_word_tokenizer([PROMPT])
    kwargs = {"max_state_dim": 32, "max_action_dim": 32, "image_size": 224, "max_token_len": 16}
    kwargs.update(overrides)
    return PI0Policy.from_preset("pi0-tiny", tokenizer=tok, stats=libero_stats(), seed=0, **kwargs)


# ---- env half: openpi's conventions against independent maths ------------------------


def test_rotation_180_moves_every_pixel_to_the_opposite_corner():
    obs = raw_observation()
    out = libero_to_policy(obs)["images"]
    h, w = 256, 256
    base, wrist = out["base_0_rgb"], out["left_wrist_0_rgb"]
    assert tuple(base[h - 1 - 10, w - 1 - 20]) == (255, 0, 0)
    assert tuple(wrist[h - 1, w - 1]) == (0, 0, 255)
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    assert np.array_equal(base, obs["agentview_image"][h - 1 - rows, w - 1 - cols])
    assert base.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize(
    "quat",
    [(0.3, -0.2, 0.1, 0.927), (0.0, 0.0, 0.7071068, 0.7071068), (1e-9, 0.0, 0.0, 1.0)],
)
def test_quat2axisangle_matches_the_rotation_matrix_log(quat):
    q = np.asarray(quat) / np.linalg.norm(quat)
    assert np.allclose(openpi_quat2axisangle(q), matrix_log(rotation_matrix(q)), atol=1e-7)


def test_quat2axisangle_keeps_openpis_sign_convention_for_negative_w():
    """q and -q are the same rotation, but openpi's formula gives angle
    2*acos(w) > pi for w < 0 -- a different vector from the canonical log. A
    port that canonicalises (w >= 0) moves the state by up to 2*pi rad."""
    q = np.array([0.3, -0.2, 0.1, 0.927])
    q /= np.linalg.norm(q)
    canonical, flipped = openpi_quat2axisangle(q), openpi_quat2axisangle(-q)
    assert np.allclose(np.linalg.norm(flipped), 2 * math.pi - np.linalg.norm(canonical))
    assert np.allclose(flipped / np.linalg.norm(flipped), -canonical / np.linalg.norm(canonical))


def test_state_composition():
    obs = raw_observation()
    state = libero_to_policy(obs)["state"]
    assert state.shape == (8,)
    assert np.array_equal(state[:3], obs["robot0_eef_pos"])
    assert np.allclose(state[3:6], matrix_log(rotation_matrix(obs["robot0_eef_quat"])), atol=1e-7)
    assert np.array_equal(state[6:], obs["robot0_gripper_qpos"])


# ---- checkpoint half: ript-core's preprocessing --------------------------------------------


def test_resize_with_pad_square_and_non_square():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    ours = resize_with_pad(img[None], 224)[0].permute(1, 2, 0).numpy()
    pil = np.asarray(Image.fromarray(img).resize((224, 224), resample=Image.BILINEAR))
    assert np.abs(ours.astype(int) - pil.astype(int)).max() <= 1
    # already at the model size: untouched
    same = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    assert np.array_equal(resize_with_pad(same[None], 224)[0].permute(1, 2, 0).numpy(), same)
    # 256 x 200 (h x w): ratio 256/224, width int(200 / ratio) = 175, centred:
    # left pad int((224 - 175) / 2) = 24, right pad 25; no vertical pad
    wide = rng.integers(1, 256, (256, 200, 3), dtype=np.uint8)
    out = resize_with_pad(wide[None], 224)[0].permute(1, 2, 0).numpy()
    assert out.shape == (224, 224, 3)
    assert not out[:, :24].any() and not out[:, 24 + 175 :].any()
    inner = out[:, 24 : 24 + 175]
    pil = np.asarray(Image.fromarray(wide).resize((175, 224), resample=Image.BILINEAR))
    assert np.abs(inner.astype(int) - pil.astype(int)).max() <= 1


def test_token_ids_of_a_known_prompt():
    """Word tokenizer ids: <pad> 0, <bos> 1, <eos> 2, <unk> 3, "\\n" 4, then the
    sorted words: black 5, bowl 6, on 7, plate 8, put 9, the 10. openpi's
    cleaning turns "_" and newlines into spaces and strips; BOS first, the
    "\\n" answer-start token last, then padding with 0 to max_token_len."""
    policy = libero_policy()
    batch = policy.preprocess([_adapter()(raw_observation())])
    golden = [1, 9, 10, 5, 6, 7, 10, 8, 4, 0, 0, 0, 0, 0, 0, 0]
    assert batch.tokens[0].tolist() == golden
    assert batch.token_masks[0].tolist() == [True] * 9 + [False] * 7


def test_images_state_and_pixels_after_preprocess():
    obs = raw_observation()
    policy = libero_policy()
    batch = policy.preprocess([_adapter()(obs)])
    # 256 -> 224 of the *rotated* frames; the rotated marker lands near the
    # opposite corner (within the bilinear footprint of its scaled position)
    rotated = obs["agentview_image"][::-1, ::-1]
    pil = np.asarray(
        Image.fromarray(np.ascontiguousarray(rotated)).resize((224, 224), Image.BILINEAR)
    )
    base = batch.images[0, 0].permute(1, 2, 0).numpy()
    assert np.abs(base.astype(int) - pil.astype(int)).max() <= 1
    assert batch.image_masks.tolist() == [[True, True]]
    # state: z-score with eps 1e-6 in float64, then zero padding to 32
    raw = libero_to_policy(obs)["state"]
    want = (raw - np.array(STATE_MEAN)) / (np.array(STATE_STD) + 1e-6)
    assert batch.state.shape == (1, 32)
    assert np.allclose(batch.state[0, :8].numpy(), want, atol=1e-5, rtol=1e-6)
    assert not batch.state[0, 8:].any()
    # the raw state travels with the batch (for inspection)
    assert np.allclose(batch.raw_state[0].numpy(), raw.astype(np.float32))
    # model pixels: openpi's Observation.from_dict, x / 255 * 2 - 1 in float32
    pixels = policy.model_inputs(batch)["pixel_values"]
    want_px = base.astype(np.float32) / np.float32(255.0) * np.float32(2.0) - np.float32(1.0)
    assert np.array_equal(pixels[0, 0].permute(1, 2, 0).numpy(), want_px)


def test_action_unnormalisation():
    policy = libero_policy()
    normalized = torch.zeros(1, policy.chunk_size, 32)
    normalized[0, 0, :7] = torch.tensor([1.0, -1.0, 0.5, 2.0, 0.0, -0.25, 1.0])
    normalized[0, :, 20] = 9.0  # padded dims are dropped
    out = policy.postprocess(normalized)
    assert out.shape == (1, policy.chunk_size, 7)
    want = normalized[0, 0, :7].double().numpy() * (np.array(ACTION_STD) + 1e-6) + ACTION_MEAN
    assert np.allclose(out[0, 0], want, atol=1e-7)
    assert np.allclose(out[0, 1], ACTION_MEAN, atol=1e-7)


def _adapter() -> ComposedObservationAdapter:
    return ComposedObservationAdapter([libero_to_policy])


def test_recorded_pipeline_matches_the_golden_stages():
    """The recorder sees exactly these stages for a LIBERO-style observation."""
    obs = raw_observation(seed=4)
    policy = libero_policy()
    actions = ComposedActionAdapter([slice_action_dims(7), clip_actions(-np.ones(7), np.ones(7))])
    rec = record_inference(
        policy, obs, obs_adapter=_adapter(), action_adapter=actions, layers=False
    )
    assert np.array_equal(rec["raw/agentview_image"], obs["agentview_image"])
    assert np.array_equal(rec["adapted/images/base_0_rgb"], obs["agentview_image"][::-1, ::-1])
    assert rec.meta["prompt"] == PROMPT
    assert rec["input/token_ids"][0].tolist()[:9] == [1, 9, 10, 5, 6, 7, 10, 8, 4]
    raw = libero_to_policy(obs)["state"]
    want = (raw - np.array(STATE_MEAN)) / (np.array(STATE_STD) + 1e-6)
    assert np.allclose(rec["input/state"][0, :8], want, atol=1e-5, rtol=1e-6)
    unnorm = rec["actions/normalized"][0, :, :7].astype(np.float64) * (
        np.array(ACTION_STD) + 1e-6
    ) + np.array(ACTION_MEAN)
    assert np.allclose(rec["actions/unnormalized"][0], unnorm, atol=1e-6)
    assert np.allclose(rec["actions/env"], np.clip(unnorm, -1, 1), atol=1e-6)
