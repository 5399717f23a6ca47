"""The libero backend + a ``pi0_libero`` pipeline give exactly the model inputs
(and env actions) that openpi's LIBERO client + server transforms give for
the same simulator state.

The openpi side is computed here from robosuite's raw observation dict with
openpi's own steps (``examples/libero/main.py``, ``LiberoInputs``,
``Normalize``, ``ResizeImages``, ``PaligemmaTokenizer``,
``PadStatesAndActions``, ``Observation.from_dict``; on the way out
``Unnormalize``, ``AbsoluteActions``, ``LiberoOutputs``), in numpy, Pillow
and sentencepiece -- not with ript's code. The session env renders 64 px
frames (speed); the client's resize-with-pad to 224 is then an upscale, the
same code path as 256 -> 224.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import sentencepiece as spm
import torch
from PIL import Image

from ript_core import get_registry
from tests.plugins.libero.conftest import ENV_OPTIONS, TASK, require_libero

require_libero()

from ript_core.policy import FeatureStats, NormStats, PI0Policy, load_tokenizer  # noqa: E402
from ript_core.policy.images import to_model_range  # noqa: E402
from ript_core.policy.io.pipeline import OPENPI_CONFIGS  # noqa: E402

STATE_MEAN = [-0.046, 0.034, 0.764, 2.97, -0.22, -0.11, 0.027, -0.027]
STATE_STD = [0.105, 0.151, 0.385, 0.344, 0.907, 0.325, 0.0141, 0.0141]
ACTION_MEAN = [0.063, 0.087, -0.099, 0.0057, 0.0036, -0.0066, -0.1]
ACTION_STD = [0.335, 0.377, 0.444, 0.040, 0.064, 0.078, 0.993]


# ---- openpi's client (examples/libero/main.py) --------------------------------------------


def openpi_quat2axisangle(quat):
    quat = np.array(quat, dtype=np.float64)
    quat[3] = min(max(quat[3], -1.0), 1.0)
    den = np.sqrt(1.0 - quat[3] * quat[3])
    if math.isclose(den, 0.0):
        return np.zeros(3)
    return (quat[:3] * 2.0 * math.acos(quat[3])) / den


def openpi_resize_with_pad(img: np.ndarray, size: int = 224) -> np.ndarray:
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


def openpi_client_element(raw: dict, prompt: str) -> dict:
    img = np.ascontiguousarray(raw["agentview_image"][::-1, ::-1])
    wrist = np.ascontiguousarray(raw["robot0_eye_in_hand_image"][::-1, ::-1])
    return {
        "observation/image": openpi_resize_with_pad(img),
        "observation/wrist_image": openpi_resize_with_pad(wrist),
        "observation/state": np.concatenate(
            (
                raw["robot0_eef_pos"],
                openpi_quat2axisangle(raw["robot0_eef_quat"]),
                raw["robot0_gripper_qpos"],
            )
        ),
        "prompt": prompt,
    }


# ---- openpi's server (policy_config.create_trained_policy for pi0_libero) -----------------


def openpi_server_inputs(element: dict, sp: spm.SentencePieceProcessor, max_len: int) -> dict:
    base = element["observation/image"]
    state = (element["observation/state"] - STATE_MEAN) / (np.array(STATE_STD) + 1e-6)
    clean = element["prompt"].strip().replace("_", " ").replace("\n", " ")
    tokens = sp.encode(clean, add_bos=True) + sp.encode("\n")
    n = len(tokens)
    images = {
        "base_0_rgb": base,
        "left_wrist_0_rgb": element["observation/wrist_image"],
        "right_wrist_0_rgb": np.zeros_like(base),
    }
    return {
        # Observation.from_dict: uint8 -> float32 x/255*2-1
        "pixels": {k: v.astype(np.float32) / 255.0 * 2.0 - 1.0 for k, v in images.items()},
        "images": images,
        "image_mask": [True, True, False],
        # PadStatesAndActions(32); jnp.asarray makes it float32
        "state": np.pad(state, (0, 32 - 8)).astype(np.float32),
        "tokenized_prompt": np.array(tokens + [0] * (max_len - n)),
        "tokenized_prompt_mask": np.array([True] * n + [False] * (max_len - n)),
    }


def openpi_outputs(normalized: np.ndarray, model_state: np.ndarray) -> np.ndarray:
    pad = 32 - 8
    state = model_state.astype(np.float64) * (
        np.pad(STATE_STD, (0, pad), constant_values=1.0) + 1e-6
    ) + np.pad(STATE_MEAN, (0, pad))
    actions = normalized.astype(np.float64) * (
        np.pad(ACTION_STD, (0, 32 - 7), constant_values=1.0) + 1e-6
    ) + np.pad(ACTION_MEAN, (0, 32 - 7))
    mask = np.array([True] * 6 + [False])
    actions[..., :7] += np.expand_dims(np.where(mask, state[..., :7], 0), axis=-2)
    return actions[..., :7]


# ---- the test ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def setup(libero_host, tmp_path_factory):
    env = libero_host.env.unwrapped  # the LiberoEnv under the worker's settle wrapper
    sp_dir = tmp_path_factory.mktemp("sp")
    model = io.BytesIO()
    words = env.instruction.split()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([" ".join(words[i:] + words[:i]) for i in range(len(words))] * 20),
        model_writer=model,
        vocab_size=40,
        minloglevel=2,
        user_defined_symbols=["\n"],
        hard_vocab_limit=False,
    )
    (sp_dir / "tokenizer.model").write_bytes(model.getvalue())
    stats = NormStats(
        FeatureStats(STATE_MEAN, STATE_STD), FeatureStats(ACTION_MEAN, ACTION_STD), eps=1e-6
    )
    policy = PI0Policy.from_preset(
        "pi0-tiny",
        tokenizer=load_tokenizer(sp_dir),
        stats=stats,
        pipeline=OPENPI_CONFIGS["pi0_libero"].pipeline,
        cameras=["base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb"],
        image_size=224,
        max_state_dim=32,
        max_action_dim=32,
        max_token_len=48,
        seed=0,
    )
    sp = spm.SentencePieceProcessor(model_file=str(sp_dir / "tokenizer.model"))
    return env, policy, sp


def test_model_inputs_and_env_actions_equal_openpis(setup):
    env, policy, sp = setup
    obs_adapter, act_adapter = get_registry().default_adapters("libero", TASK, ENV_OPTIONS)
    env.reset(seed=2, options={"init_state": 5})
    for action in ([0.4, -0.3, 0.2, 0.3, -0.2, 0.4, 1.0],) * 3:
        env.step(action)
    raw = env._raw  # robosuite's observation dict: the simulator state both sides see
    from ript_libero.env import to_observation

    ours = policy.preprocess([obs_adapter(to_observation(raw, env.instruction))])
    element = openpi_client_element(raw, env.instruction)
    ref = openpi_server_inputs(element, sp, 48)

    for c, slot in enumerate(("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")):
        np.testing.assert_array_equal(
            ours.images[0, c].permute(1, 2, 0).numpy(), ref["images"][slot]
        )
        np.testing.assert_array_equal(
            to_model_range(ours.images[0, c]).permute(1, 2, 0).numpy(), ref["pixels"][slot]
        )
    assert ours.image_masks[0].tolist() == ref["image_mask"]
    np.testing.assert_array_equal(ours.state[0].numpy(), ref["state"])  # bit for bit
    np.testing.assert_array_equal(ours.tokens[0].numpy(), ref["tokenized_prompt"])
    np.testing.assert_array_equal(ours.token_masks[0].numpy(), ref["tokenized_prompt_mask"])
    assert int(ours.token_masks[0].sum()) > 5  # a real prompt, not an empty one

    # the way out: the same model output through both output pipelines
    normalized = torch.randn(1, policy.chunk_size, 32, generator=torch.Generator().manual_seed(4))
    env_actions = act_adapter(policy.postprocess(normalized, ours)[0])
    want = openpi_outputs(normalized.numpy(), ref["state"])[0]
    # openpi sends them unclipped; robosuite clips to [-1, 1] inside step(), ours before
    np.testing.assert_allclose(env_actions, np.clip(want, -1, 1), rtol=0, atol=1e-6)
    plain = normalized.numpy()[0, :, :7].astype(np.float64) * (np.array(ACTION_STD) + 1e-6)
    added = want[:, :6] - plain[:, :6] - ACTION_MEAN[:6]  # the client's state, up to rounding
    np.testing.assert_allclose(
        added, np.tile(element["observation/state"][:6], (len(want), 1)), rtol=0, atol=1e-6
    )
    np.testing.assert_allclose(want[:, 6], plain[:, 6] + ACTION_MEAN[6], atol=1e-12)  # gripper not
