"""Under torchrun (gloo, 2 ranks): RIPT training with ``update.distributed=fsdp``,
once straight through 2 iterations (``OUT/ref``) and once for 1 iteration
then resumed from its checkpoint for the second (``OUT/cut``), in one
launch (one process group) to keep the test short. Each rank draws its own
contexts, so the ranks re-score different numbers of decisions."""

from pathlib import Path

from ript_core.rl.distributed import exit_rank
from ript_core.rl.trainer import Trainer
from tests.rl.conftest import tiny_config
from tests.rl.fixtures import worker_output


def train(out: Path, name: str, iterations: int, resume: bool) -> str:
    cfg = tiny_config(
        out / name,
        update={"distributed": "fsdp", "micro_batch": 4},
        ript={"iterations": iterations},
        eval={"episodes_per_init_state": 1},
        keep_checkpoints=10,
    )
    with Trainer(cfg, resume=resume, progress=False) as trainer:
        trainer.run()
        return trainer.distributed


def main() -> None:
    out = worker_output(__doc__)
    assert train(out, "ref", 2, resume=False) == "fsdp"
    train(out, "cut", 1, resume=False)
    train(out, "cut", 2, resume=True)
    exit_rank()  # an orderly end under torchrun (ript_core.rl.distributed.exit_rank)


if __name__ == "__main__":
    main()
