"""Every config shipped in ``ript_core/configs`` loads, validates and evaluates
only on init states that neither RIPT nor the BC demos use."""

from importlib import resources

import pytest

from ript_core.config import load_config
from ript_core.plugins import get_registry
from ript_core.rl.config import TrainConfig, parse_range

CONFIGS = sorted(
    p.name for p in resources.files("ript_core.configs").iterdir() if p.name.endswith(".yaml")
)


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_config_is_valid_and_held_out(name):
    with resources.as_file(resources.files("ript_core.configs") / name) as path:
        cfg = load_config(TrainConfig, path)
    cfg.check()
    reg = get_registry()
    backend = cfg.env.backend
    if backend not in reg.backends() or not reg.availability(backend).available:
        # only a missing plugin skips; a bad task name in the config fails below
        pytest.skip(f"the {backend} backend is not installed here: pip install -e '.[{backend}]'")
    infos = [reg.task_info(backend, t) for t in cfg.env.tasks]
    for info in infos:
        n = info.n_init_states
        train = set(parse_range(cfg.env.train_init_states, n))
        held_out = set(parse_range(cfg.env.eval_init_states, n))
        assert held_out and not held_out & train
        if not cfg.bc.demos_file:  # a demo file's init states are checked when a run starts
            demos = set(parse_range(cfg.bc.demo_init_states, n)[: cfg.bc.demos_per_task])
            assert not held_out & demos
