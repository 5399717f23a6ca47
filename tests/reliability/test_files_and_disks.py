"""Files and disks (issue 34): a broken file or a full disk costs one clear line,
never the checkpoints already written; ``--resume`` falls back past damage."""

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

from ript_core.cli.app import main
from ript_core.policy import PI0Policy, load_policy, save_policy
from ript_core.policy.io.layouts import CheckpointError
from ript_core.rl import run_checkpoint
from ript_core.rl import trainer as trainer_module
from ript_core.rl.run_checkpoint import (
    LATEST,
    MANIFEST,
    checkpoint_root,
    find_resumable,
    latest_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)
from ript_core.rl.trainer import Trainer, TrainingError

NO_BC = {"demos_per_task": 0, "steps": 0}


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def saved_policy(tmp_path) -> Path:
    path = tmp_path / "policy"
    save_policy(PI0Policy.from_preset("pi0-tiny", seed=0, action_dim=3, state_dim=3), path)
    return path


CORRUPTIONS = {
    "zero-byte": lambda b: b"",
    "truncated": lambda b: b[: len(b) // 2],
    "bad header": lambda b: (1 << 40).to_bytes(8, "little") + b[8:],
}


@pytest.mark.parametrize("damage", sorted(CORRUPTIONS))
def test_a_damaged_weights_file_is_named_with_the_fix(saved_policy, damage):
    weights = saved_policy / "model.safetensors"
    weights.write_bytes(CORRUPTIONS[damage](weights.read_bytes()))
    with pytest.raises(CheckpointError) as info:
        load_policy(saved_policy)
    message = str(info.value)
    assert str(weights) in message and "not a readable safetensors file" in message
    assert "copy it again or point at another checkpoint" in message
    assert "\n" not in message


def test_eval_and_train_name_a_damaged_weights_file(saved_policy, tiny_cfg, write_cfg, capsys):
    weights = saved_policy / "model.safetensors"
    weights.write_bytes(b"")
    common = ["--tasks", "reach-red", "--init-states", "0:1", "--workers", "0"]
    assert main(["eval", str(saved_policy), *common]) == 2
    assert f"{weights} (0 bytes) is not a readable safetensors file" in one_line(
        capsys.readouterr().out
    )
    cfg = write_cfg(tiny_cfg(init_checkpoint=str(saved_policy), bc=NO_BC))
    assert main(["train", str(cfg), "--quiet"]) == 2
    assert f"{weights} (0 bytes) is not a readable" in one_line(capsys.readouterr().out)


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path, capsys):
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("run_dir: runs/x\noptim:\n  lr: [1e-4\n")
    assert main(["train", str(cfg)]) == 2
    out = one_line(capsys.readouterr().out)
    assert f"{cfg}: line 4, column 1 is not valid YAML" in out and "fix it there" in out


@pytest.mark.parametrize(
    ("run_dir", "message"),
    [
        ("a_file", "is a file, not a directory"),
        ("/proc/ript-run", "is not writable"),
    ],
)
def test_an_unusable_run_dir_fails_before_the_policy_is_built(
    tiny_cfg, tmp_path, monkeypatch, run_dir, message
):
    (tmp_path / "a_file").write_text("x")
    path = run_dir if run_dir.startswith("/") else str(tmp_path / run_dir)

    def never(*a, **k):
        raise AssertionError("the policy was built before the run dir was checked")

    monkeypatch.setattr(PI0Policy, "from_config", never)
    with pytest.raises(ValueError, match=f"run_dir {path} {message}"):
        Trainer(tiny_cfg(run_dir=path))


def test_an_unwritable_run_dir_is_named(tiny_cfg, tmp_path, monkeypatch):
    # the tests run as root, whom chmod does not stop: the refusal is injected
    def refuse(self, data):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "write_bytes", refuse)
    with pytest.raises(ValueError, match=r"run_dir \S+ is not writable \(Permission denied\)"):
        Trainer(tiny_cfg(run_dir=str(tmp_path / "ro")))


@pytest.mark.parametrize(
    "failure",
    [
        SafetensorError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No '
            'space left on device" })'
        ),
        PermissionError(errno.EACCES, "Permission denied"),
        OSError(errno.EROFS, "Read-only file system"),
    ],
)
def test_a_checkpoint_write_that_fails_keeps_latest_and_says_so(tiny_cfg, monkeypatch, failure):
    cfg = tiny_cfg(bc=NO_BC)
    with Trainer(cfg, progress=False) as trainer:
        trainer.checkpoint()
        good = latest_checkpoint(cfg.run_dir)

        def fail(policy, directory):
            Path(directory).mkdir()
            (Path(directory) / "model.safetensors").write_bytes(b"half")
            raise failure

        monkeypatch.setattr(trainer_module, "save_policy", fail)
        trainer.iteration = 1
        with pytest.raises(TrainingError) as info:
            trainer.checkpoint()
    message = str(info.value)
    assert "could not write checkpoint iteration 1" in message
    assert type(failure).__name__ in message
    assert "latest is still iter_000000" in message and "--resume" in message
    root = checkpoint_root(cfg.run_dir)
    assert latest_checkpoint(cfg.run_dir) == good and verify_checkpoint(good) is None
    assert sorted(p.name for p in root.iterdir()) == ["iter_000000", LATEST]  # no .tmp left


def write_policy(directory: Path) -> None:
    directory.mkdir()
    (directory / "model.safetensors").write_bytes(b"weights" * 100)


def test_resume_skips_a_truncated_newest_checkpoint(tmp_path):
    for it in (1, 2, 3):
        save_checkpoint(tmp_path, it, write_policy, {"iteration": it}, keep=3)
    newest = checkpoint_root(tmp_path) / "iter_000003" / "trainer.pt"
    newest.write_bytes(newest.read_bytes()[:10])
    ckpt, skipped = find_resumable(tmp_path)
    assert ckpt.name == "iter_000002"
    assert len(skipped) == 1 and skipped[0][0] == "iter_000003"
    assert "trainer.pt has 10 bytes" in skipped[0][1]


def test_resume_skips_a_latest_pointing_at_a_deleted_checkpoint(tmp_path):
    for it in (1, 2):
        save_checkpoint(tmp_path, it, write_policy, {"iteration": it}, keep=3)
    shutil.rmtree(checkpoint_root(tmp_path) / "iter_000002")
    ckpt, skipped = find_resumable(tmp_path)
    assert ckpt.name == "iter_000001"
    assert skipped == [(LATEST, "points at iter_000002, which does not exist")]


def test_a_flipped_byte_fails_the_checksum(tmp_path):
    ckpt = save_checkpoint(tmp_path, 1, write_policy, {"iteration": 1})
    weights = ckpt / "policy" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[5] ^= 1
    weights.write_bytes(bytes(data))
    assert (
        verify_checkpoint(ckpt)
        == "policy/model.safetensors does not match its manifest's checksum (corrupted)"
    )


def test_a_checkpoint_without_its_manifest_was_never_finished(tmp_path):
    ckpt = save_checkpoint(tmp_path, 1, write_policy, {"iteration": 1})
    (ckpt / MANIFEST).unlink()
    (ckpt / "trainer.pt").unlink()
    assert "its write never finished" in verify_checkpoint(ckpt)


def test_trainer_resumes_from_the_newest_complete_checkpoint(tiny_cfg, caplog):
    cfg = tiny_cfg(ript={"iterations": 2}, bc=NO_BC, keep_checkpoints=3)
    with Trainer(cfg, progress=False) as trainer:
        trainer.run()
    root = checkpoint_root(cfg.run_dir)
    newest = root / "iter_000002" / "trainer.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    caplog.set_level("WARNING", logger="ript_core.rl.trainer")
    with Trainer(cfg, resume=True, progress=False) as resumed:
        assert resumed.iteration == 1
    assert "--resume: skipped iter_000002: trainer.pt has" in caplog.text
    # set aside, kept for a look, and no longer a candidate nor counted as kept
    assert (root / "iter_000002.broken").is_dir() and not (root / "iter_000002").exists()


def test_a_checkpoint_is_durable_before_latest_names_it(tmp_path, monkeypatch):
    """fsync every file, the manifest last, the directory; rename; fsync the
    parent; only then move latest (and fsync the parent again)."""
    events: list[tuple[str, str]] = []
    real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(a, b):
        events.append(("rename", f"{Path(a).name}->{Path(b).name}"))
        real_rename(a, b)

    def replace(a, b):
        events.append(("replace", f"{Path(a).name}->{Path(b).name}"))
        real_replace(a, b)

    monkeypatch.setattr(run_checkpoint.os, "fsync", fsync)
    monkeypatch.setattr(run_checkpoint.os, "rename", rename)
    monkeypatch.setattr(run_checkpoint.os, "replace", replace)
    save_checkpoint(tmp_path, 7, write_policy, {"iteration": 7})
    root = str(checkpoint_root(tmp_path))
    tmp = f"{root}/iter_000007.tmp"
    synced = [p for kind, p in events if kind == "fsync"]
    rename_at = events.index(("rename", "iter_000007.tmp->iter_000007"))
    before = {p for kind, p in events[:rename_at] if kind == "fsync"}
    for name in ("policy/model.safetensors", "trainer.pt", MANIFEST, "policy", ""):
        assert f"{tmp}/{name}".rstrip("/") in before, name
    # the manifest is written after every other file is on disk
    assert synced.index(f"{tmp}/{MANIFEST}") > synced.index(f"{tmp}/trainer.pt")
    latest_at = events.index(("replace", f"{LATEST}.tmp->{LATEST}"))
    assert ("fsync", root) in events[rename_at:latest_at]
    assert events[-1] == ("fsync", root)


def test_manifest_lists_every_file_with_size_and_checksum(tmp_path):
    ckpt = save_checkpoint(tmp_path, 1, write_policy, {"iteration": 1}, run_config={"seed": 3})
    files = json.loads((ckpt / MANIFEST).read_text())["files"]
    assert sorted(files) == ["policy/model.safetensors", "run_config.json", "trainer.pt"]
    assert files["policy/model.safetensors"]["bytes"] == 700
    assert torch.load(ckpt / "trainer.pt")["iteration"] == 1
