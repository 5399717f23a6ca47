"""``checkpoints/latest``: a path that works wherever a checkpoint is expected."""

import os

from ript_core.rl.run_checkpoint import LATEST, checkpoint_root, latest_checkpoint, save_checkpoint


def write_policy(directory):
    directory.mkdir()
    (directory / "model.safetensors").write_bytes(b"weights")


def test_latest_is_a_symlink_to_the_newest_checkpoint(tmp_path):
    for it in (1, 2, 3):
        save_checkpoint(tmp_path, it, write_policy, {"iteration": it}, keep=2)
    root = checkpoint_root(tmp_path)
    latest = root / LATEST
    assert latest.is_symlink() and os.readlink(latest) == "iter_000003"  # relative: movable
    assert (latest / "policy" / "model.safetensors").read_bytes() == b"weights"
    assert latest_checkpoint(tmp_path) == root / "iter_000003"
    assert sorted(p.name for p in root.iterdir()) == ["iter_000002", "iter_000003", LATEST]


def test_a_text_pointer_from_an_older_run_is_still_read(tmp_path):
    save_checkpoint(tmp_path, 4, write_policy, {"iteration": 4})
    root = checkpoint_root(tmp_path)
    (root / LATEST).unlink()
    (root / LATEST).write_text("iter_000004\n")
    assert latest_checkpoint(tmp_path) == root / "iter_000004"
