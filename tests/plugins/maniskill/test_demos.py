"""Expert demos recorded on ManiSkill, written to a demo file and read back."""

from __future__ import annotations

import json

import numpy as np

from tests.plugins.maniskill.conftest import IMAGE_SIZE, require_maniskill

require_maniskill()

from ript_core.rl.demos import load_demos, record_demos, save_demos  # noqa: E402

CHUNK = 10
OPTIONS = {"image_size": IMAGE_SIZE, "hand_camera": True}


def test_a_recorded_demo_file_reloads_to_identical_arrays(tmp_path):
    demos = record_demos("maniskill", ["PushCube"], [0, 1], CHUNK, seed=0, env_options=OPTIONS)
    assert (demos.episodes, demos.successes) == (2, 2)
    path = save_demos(demos, tmp_path / "push.npz", {"backend": "maniskill", "init_states": [0, 1]})
    back, meta = load_demos(path, CHUNK)

    assert meta == {"backend": "maniskill", "init_states": [0, 1]}
    assert (back.episodes, back.successes, len(back)) == (2, 2, len(demos))
    np.testing.assert_array_equal(back.chunks, demos.chunks)
    np.testing.assert_array_equal(back.is_pad, demos.is_pad)
    for a, b in zip(demos.inputs, back.inputs, strict=True):
        assert a.prompt == b.prompt
        np.testing.assert_array_equal(a.state, b.state)
        assert a.images.keys() == b.images.keys() == {"base_0_rgb", "left_wrist_0_rgb"}
        for slot in a.images:
            np.testing.assert_array_equal(a.images[slot], b.images[slot])

    # another chunk length: windows cut from the per-step actions, per episode
    short, _ = load_demos(path, 3)
    actions = demos.chunks[:, 0]
    # episode ends: the steps whose recorded chunk holds one real action
    ends = np.flatnonzero(demos.is_pad[:, 1]) + 1
    starts = np.concatenate([[0], ends[:-1]])
    assert ends[-1] == len(demos)
    for s, e in zip(starts, ends, strict=True):
        for t in range(s, e):
            real = min(3, e - t)
            np.testing.assert_array_equal(short.chunks[t, :real], actions[t : t + real])
            np.testing.assert_array_equal(
                short.chunks[t, real:], np.repeat(actions[e - 1 : e], 3 - real, 0)
            )
            assert list(short.is_pad[t]) == [False] * real + [True] * (3 - real)

    with np.load(path) as f:
        assert int(f["format"]) == 1 and json.loads(str(f["meta"]))["backend"] == "maniskill"
        assert f["image/base_0_rgb"].shape == (len(demos), IMAGE_SIZE, IMAGE_SIZE, 3)
