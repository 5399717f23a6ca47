"""Metrics to a JSONL file, TensorBoard event files and (optionally) W&B.

Only rank 0 writes. On resume the JSONL keeps the lines up to the resumed
iteration (the full previous file is kept beside it as ``.before-resume``),
so a resumed run's metrics file reads like an uninterrupted one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any


class MetricsLogger:
    def __init__(
        self,
        run_dir: Path,
        enabled: bool = True,
        tensorboard: bool = True,
        wandb_project: str | None = None,
        config: dict[str, Any] | None = None,
        resume_iteration: int | None = None,
    ) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self._tb = None
        self._wandb = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume_iteration is not None and self.path.exists():
            backup = self.path.with_suffix(".jsonl.before-resume")
            shutil.copyfile(self.path, backup)
            kept = [
                line
                for line in backup.read_text().splitlines()
                if line.strip() and json.loads(line).get("iteration", -1) <= resume_iteration
            ]
            self.path.write_text("".join(line + "\n" for line in kept))
        elif resume_iteration is None and self.path.exists():
            self.path.unlink()
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tensorboard"))
        if wandb_project:
            try:
                import wandb
            except ImportError as exc:
                raise RuntimeError(
                    "wandb_project is set but wandb is not installed: pip install wandb"
                ) from exc
            self._wandb = wandb.init(project=wandb_project, config=config, dir=str(run_dir))

    def log(self, iteration: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"iteration": iteration, **metrics}
        with self.path.open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        numeric = {
            k: v
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        if self._tb is not None:
            for k, v in numeric.items():
                self._tb.add_scalar(k, v, iteration)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(numeric, step=iteration)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
