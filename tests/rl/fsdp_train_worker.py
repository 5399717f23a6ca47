"""Under torchrun (gloo, 2 ranks): RIPT training with ``update.distributed=fsdp``,
once straight through 2 iterations (``<out>/ref``) and once for 1 iteration
then resumed from its checkpoint for the second (``<out>/cut``), in one
launch (one process group) to keep the test short. Each rank draws its own
contexts, so the ranks re-score different numbers of decisions."""

import sys
from pathlib import Path

from ript_core.rl.distributed import shutdown
from ript_core.rl.trainer import Trainer
from tests.rl.conftest import tiny_config

out = Path(sys.argv[1])


def train(name: str, iterations: int, resume: bool) -> str:
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


assert train("ref", 2, resume=False) == "fsdp"
train("cut", 1, resume=False)
train("cut", 2, resume=True)
shutdown()  # an orderly gloo shutdown (ript_core.rl.distributed.shutdown)
