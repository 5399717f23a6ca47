"""Images, state normalisation and action un-normalisation."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
import torch
from PIL import Image

from ript_core.envs.interfaces import PolicyInput
from ript_core.policy.images import resize_with_pad, resized_shape, to_model_range
from ript_core.policy.io.stats import FeatureStats, NormStats
from tests.policy.conftest import make_inputs


def test_non_square_image_is_padded_not_stretched():
    # a white 40x80 (h x w) image into 56x56: resized to 28x56, centred, black bands
    img = np.full((1, 40, 80, 3), 255, dtype=np.uint8)
    out = resize_with_pad(img, 56)
    assert out.shape == (1, 3, 56, 56) and out.dtype == torch.uint8
    assert resized_shape(40, 80, 56) == (28, 56)
    rows_white = (out[0, 0] == 255).all(dim=1)
    assert rows_white.nonzero().flatten().tolist() == list(range(14, 42))  # centred
    assert (out[0, :, :14] == 0).all() and (out[0, :, 42:] == 0).all()
    # aspect preserved: a left/right split image stays split at the centre column
    half = np.zeros((1, 40, 80, 3), dtype=np.uint8)
    half[:, :, 40:] = 255
    split = resize_with_pad(half, 56)[0, 0, 28]
    assert (split[:27] == 0).all() and (split[29:] == 255).all()


def test_resize_follows_pil_bilinear_within_one_level():
    """openpi's client resizes with PIL bilinear on uint8; ours stays within one grey level."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    h, w = resized_shape(96, 128, 56)
    pil = np.asarray(Image.fromarray(img).resize((w, h), resample=Image.BILINEAR))
    ours = resize_with_pad(img[None], 56)[0].permute(1, 2, 0).numpy()
    top = (56 - h) // 2
    diff = np.abs(ours[top : top + h].astype(int) - pil.astype(int))
    assert diff.max() <= 1


def test_image_at_model_size_passes_through_untouched():
    img = np.random.default_rng(1).integers(0, 256, (2, 56, 56, 3), dtype=np.uint8)
    assert torch.equal(resize_with_pad(img, 56), torch.from_numpy(img).permute(0, 3, 1, 2))


def test_pixels_in_minus_one_one():
    x = torch.tensor([0, 1, 127, 128, 254, 255], dtype=torch.uint8)
    y = to_model_range(x)
    assert y.min().item() == -1.0 and y.max().item() == 1.0
    assert torch.equal(y, x.float() / 255.0 * 2.0 - 1.0)


def test_preprocess_masks_missing_cameras_and_pads_state(policy):
    inputs = make_inputs(3)
    inputs[1] = PolicyInput(
        images={"base_0_rgb": inputs[1].images["base_0_rgb"]}, state=inputs[1].state, prompt="x"
    )
    batch = policy.preprocess(inputs)
    assert batch.images.shape == (3, 2, 3, 56, 56)
    assert batch.image_masks.tolist() == [[True, True], [True, False], [True, True]]
    assert (batch.images[1, 1] == 0).all()  # black, i.e. -1 in model space
    assert batch.state.shape == (3, 8) and (batch.state[:, 3:] == 0).all()
    kw = policy.model_inputs(batch)
    # image tokens of the missing camera are masked out; pixel mask covers every slot
    assert kw["attention_mask"][1, 16:32].sum() == 0 and kw["attention_mask"][0, :32].all()
    assert kw["pixel_attention_mask"].all()


def test_cameras_present_are_host_booleans_that_drop_a_missing_camera(policy):
    """Preprocessing records which slots any sample fills, so dropping a camera
    no sample has never reads the (GPU) masks; the recorded and the read
    answer give the same model inputs."""
    from ript_core.policy.batch import PolicyBatch

    full = make_inputs(2)
    inputs = [
        PolicyInput(images={"base_0_rgb": x.images["base_0_rgb"]}, state=x.state, prompt="x")
        for x in full
    ]
    batch = policy.preprocess(inputs)
    assert batch.cameras_present == (True, False)
    assert policy.config.drop_missing_cameras
    recorded = policy.model_inputs(batch)
    assert recorded["pixel_values"].shape[1] == 1  # the wrist slot is dropped
    read = policy.model_inputs(attrs.evolve(batch, cameras_present=None))
    assert recorded.keys() == read.keys()
    for k in recorded:
        assert torch.equal(recorded[k], read[k]), k
    # the rows of a minibatch do not know; a concatenation knows if its parts do
    assert batch.select([0]).cameras_present is None
    both = PolicyBatch.cat([batch, policy.preprocess(full)])
    assert both.cameras_present == (True, True)
    assert PolicyBatch.cat([batch, batch.select([1])]).cameras_present is None
    assert batch.to("cpu").cameras_present == (True, False)


def test_unknown_camera_slot_is_an_error(policy):
    bad = PolicyInput(
        images={"agentview": np.zeros((8, 8, 3), np.uint8)}, state=np.zeros(3), prompt="x"
    )
    with pytest.raises(KeyError, match="agentview"):
        policy.preprocess([bad])


@pytest.mark.parametrize("mode", ["mean_std", "quantile"])
def test_normalise_and_unnormalise_are_exact_inverses(mode):
    rng = np.random.default_rng(2)
    data = rng.normal(3.0, [0.5, 2.0, 1e-7], size=(500, 3))  # one near-constant dim (eps matters)
    stats = NormStats.fit(data, data, mode=mode, eps=1e-6)
    x = torch.as_tensor(data[:50], dtype=torch.float32)
    for feature in ("state", "actions"):
        y = stats.normalize(x, feature)
        # float32 in and out: equal up to one float32 rounding of the normalised value
        assert torch.allclose(stats.unnormalize(y, feature), x, rtol=1e-6, atol=1e-6)
        assert torch.allclose(stats.normalize(stats.unnormalize(y, feature), feature), y, atol=1e-4)
    y = stats.normalize(x, "state")
    if mode == "mean_std":
        expected = (x.double() - torch.tensor(stats.state.mean, dtype=torch.float64)) / (
            torch.tensor(stats.state.std, dtype=torch.float64) + 1e-6
        )
    else:
        q01 = torch.tensor(stats.state.q01, dtype=torch.float64)
        q99 = torch.tensor(stats.state.q99, dtype=torch.float64)
        expected = (x.double() - q01) / (q99 - q01 + 1e-6) * 2 - 1
    assert torch.allclose(y.double(), expected, atol=1e-6)


def test_state_and_action_pipeline_round_trip(policy):
    """preprocess normalises the state with the stats; postprocess un-normalises
    and slices actions; both agree with the stats' formulas."""
    stats = NormStats(
        state=FeatureStats(mean=[1.0, -2.0, 0.5], std=[2.0, 0.5, 4.0]),
        actions=FeatureStats(mean=[0.1, 0.2, 0.3], std=[0.5, 1.5, 2.5]),
    )
    policy.set_stats(stats)
    inputs = make_inputs(2)
    batch = policy.preprocess(inputs)
    raw = torch.tensor(np.stack([i.state for i in inputs]))
    assert torch.allclose(
        batch.state[:, :3],
        (raw - torch.tensor([1.0, -2.0, 0.5])) / (torch.tensor([2.0, 0.5, 4.0]) + 1e-6),
    )
    demo = torch.randn(2, 10, 3)
    normed = policy.normalize_actions(demo)
    assert normed.shape == (2, 10, 8) and (normed[..., 3:] == 0).all()
    back = policy.postprocess(normed)
    assert back.shape == (2, 10, 3) and back.dtype == np.float32
    np.testing.assert_allclose(back, demo.numpy(), atol=1e-6)


def test_identity_stats_for_random_init(policy):
    assert policy.stats.source == "identity"
    x = torch.randn(4, 3)
    assert torch.equal(policy.stats.normalize(x, "state"), x)
    assert torch.equal(policy.stats.unnormalize(x, "actions"), x)


def test_stats_dims_must_fit(policy):
    with pytest.raises(ValueError, match="action_dim=3"):
        policy.set_stats(NormStats.identity(3, 4))
    with pytest.raises(ValueError, match="quantile"):
        NormStats(state=FeatureStats.identity(2), actions=FeatureStats.identity(2), mode="quantile")


def test_a_constant_feature_is_not_blown_up_by_eps():
    from ript_core.policy import NormStats

    states = np.stack([np.random.default_rng(0).uniform(0, 1, 50), np.zeros(50)], axis=1)
    stats = NormStats.fit(states, np.random.default_rng(1).normal(size=(50, 2)))
    assert stats.state.std[1] == 1.0 and stats.state.std[0] < 0.5
    unseen = torch.tensor([[0.5, 1.0]])  # the gripper closes: never seen in the demos
    assert stats.normalize(unseen, "state")[0, 1].item() == pytest.approx(1.0, abs=1e-5)
