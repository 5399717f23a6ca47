"""A run directory, checked before anything slow is built."""

from __future__ import annotations

import os
from pathlib import Path


def check_run_dir(run_dir: Path) -> None:
    """Raise ``ValueError`` naming ``run_dir``, the problem and the fix unless
    the run can create it and write files (and checkpoints) there."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"run_dir {run_dir} is a file, not a directory: set run_dir to a new path")
    probe = run_dir / f".write-test-{os.getpid()}"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
        checkpoints = run_dir / "checkpoints"
        if checkpoints.is_dir() and not os.access(checkpoints, os.W_OK | os.X_OK):
            raise PermissionError(f"{checkpoints} is read-only")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ValueError(
            f"run_dir {run_dir} is not writable ({reason}): set run_dir to a directory you can "
            "write to, or fix its permissions"
        ) from None
