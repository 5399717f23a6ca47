"""``exit_rank``: how a torchrun rank ends (ript_core/rl/distributed.py)."""

import subprocess
import sys
from pathlib import Path

from ript_core.rl.distributed import exit_rank

RANK = """
import sys, torch.distributed as dist
from ript_core.rl.distributed import exit_rank
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
print("written before the exit", end="")
exit_rank(3)
print("never reached")
"""


def test_exit_rank_ends_the_process_with_its_code_after_flushing_its_output(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-c", RANK, str(tmp_path / "store")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout == "written before the exit"


def test_exit_rank_without_a_process_group_returns():
    assert exit_rank(0) is None
