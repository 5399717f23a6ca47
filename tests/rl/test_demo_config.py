"""The embedded demo's config (``ript demo``) loads, validates and never
evaluates on an init state that BC or RIPT trains on."""

from importlib import resources

from ript_core.config import load_config
from ript_core.configs import DEMO_CONFIG
from ript_core.plugins import get_registry
from ript_core.rl.config import TrainConfig, parse_range


def test_the_demo_config_is_valid_and_its_evaluation_is_held_out():
    with resources.as_file(resources.files("ript_core.configs") / DEMO_CONFIG) as path:
        cfg = load_config(TrainConfig, path)
    cfg.check()
    reg = get_registry()
    for task in cfg.env.tasks:
        n = reg.task_info(cfg.env.backend, task).n_init_states
        train = set(parse_range(cfg.env.train_init_states, n))
        held_out = set(parse_range(cfg.env.eval_init_states, n))
        demos = set(parse_range(cfg.bc.demo_init_states, n)[: cfg.bc.demos_per_task])
        assert held_out and not held_out & (train | demos)
        # BC's stopping checks: training states the demos do not start from
        checks = set(parse_range(cfg.bc.check_init_states, n))
        assert cfg.bc.target_success > 0 and checks <= train and not checks & (demos | held_out)
        assert len(held_out) * cfg.eval.episodes_per_init_state >= 100  # a readable rate
