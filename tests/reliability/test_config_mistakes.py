"""Configuration mistakes (issue 34): each gets an error naming the key, the value
and the fix, before anything slow; nothing is cut or ignored silently."""

import json
from pathlib import Path

import pytest

from ript_core.cli.app import build_parser, main, parse
from ript_core.config import ConfigError, load_config, structure
from ript_core.policy import PI0Policy, save_policy
from ript_core.policy.io.layouts import CheckpointError
from ript_core.rl.config import TrainConfig, parse_range
from ript_core.rl.config_history import HISTORY_FILE
from ript_core.rl.trainer import Trainer

NO_BC = {"demos_per_task": 0, "steps": 0}


def one_line(text: str) -> str:
    return " ".join(text.split())


def test_a_range_past_the_tasks_init_states_is_refused_not_cut():
    with pytest.raises(ValueError) as info:
        parse_range("150:900", 200, "env.eval_init_states")
    message = str(info.value)
    assert "env.eval_init_states '150:900' selects 700 init states outside 0:200" in message
    assert "the task has 200 init states" in message
    assert parse_range("150:", 200) == list(range(150, 200))


def test_train_refuses_an_eval_range_past_the_task(tiny_cfg):
    with pytest.raises(ValueError, match=r"env.eval_init_states \(task reach-red\) '150:900'"):
        Trainer(tiny_cfg(env={"eval_init_states": "150:900"}))


def test_eval_refuses_an_init_state_range_past_the_task(tmp_path, capsys):
    # the range is checked before the checkpoint is even looked at
    argv = ["eval", str(tmp_path / "none"), "--tasks", "reach-red", "--init-states", "190:900"]
    assert main(argv) == 2
    out = one_line(capsys.readouterr().out)
    assert "--init-states (task reach-red) '190:900' selects 700 init states outside 0:200" in out


def test_a_range_that_is_not_a_range_names_the_setting(tiny_cfg):
    with pytest.raises(ValueError, match=r"env.train_init_states \(task reach-red\) 'abc' is not"):
        Trainer(tiny_cfg(env={"train_init_states": "abc"}))


def test_a_range_override_is_a_range_not_a_base_60_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("env:\n  eval_init_states: 40:44\n")  # unquoted in the file too
    cfg = load_config(TrainConfig, path, ["env.train_init_states=10:20", "optim.lr=1e-5"])
    assert cfg.env.train_init_states == "10:20" and cfg.env.eval_init_states == "40:44"
    assert cfg.optim.lr == 1e-5


def test_a_string_where_a_list_belongs_is_refused():
    with pytest.raises(
        ConfigError, match=r"env.tasks: expected a list, got 'reach-red' \(write \[reach-red\]\)"
    ):
        structure(TrainConfig, {"env": {"tasks": "reach-red"}})


def test_a_nested_unknown_key_lists_its_own_sections_keys():
    with pytest.raises(ConfigError) as info:
        structure(TrainConfig, {"env": {"taks": ["reach-red"]}})
    message = str(info.value)
    assert (
        "env.taks: unknown key (did you mean 'tasks'?); valid keys of env: backend, tasks"
        in message
    )
    assert "run_dir" not in message  # the top-level keys are not the valid ones here


def test_an_unknown_task_lists_the_backends_tasks(tiny_cfg):
    with pytest.raises(
        ValueError, match=r"no task\(s\) \['reach-purple'\]; its tasks: reach-blue, "
    ):
        Trainer(tiny_cfg(env={"tasks": ["reach-purple"]}))


@pytest.fixture
def tiny_checkpoint(tmp_path):
    path = tmp_path / "init"
    policy = PI0Policy.from_preset(
        "pi0-tiny", seed=0, action_dim=3, state_dim=3, logp_horizon=5, logp_action_dims=3
    )
    save_policy(policy, path)
    return path


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"chunk_size": 20}, r"policy.chunk_size=20 \(the checkpoint has 10\)"),
        ({"preset": "pi0"}, r"policy.preset='pi0' \(the checkpoint has 'pi0-tiny'\)"),
    ],
)
def test_architecture_settings_beside_init_checkpoint_must_match_it(
    tiny_cfg, tiny_checkpoint, setting, message
):
    cfg = tiny_cfg(init_checkpoint=str(tiny_checkpoint), bc=NO_BC)
    for key, value in setting.items():
        setattr(cfg.policy, key, value)
    with pytest.raises(ValueError, match=message):
        Trainer(cfg)


def test_policy_json_and_config_json_must_agree_on_the_chunk(tiny_checkpoint):
    from ript_core.policy import load_policy

    config = tiny_checkpoint / "config.json"
    data = json.loads(config.read_text())
    data["chunk_size"] = 7
    config.write_text(json.dumps(data))
    saved = json.loads((tiny_checkpoint / "policy.json").read_text())
    saved["policy"]["chunk_size"] = 10
    (tiny_checkpoint / "policy.json").write_text(json.dumps(saved))
    with pytest.raises(
        CheckpointError, match="policy.json says chunk_size=10 but config.json says chunk_size=7"
    ):
        load_policy(tiny_checkpoint)


def test_resume_with_a_changed_config_is_refused_unless_allowed(tiny_cfg):
    cfg = tiny_cfg(ript={"iterations": 1}, bc=NO_BC)
    with Trainer(cfg, progress=False) as trainer:
        trainer.run()
    changed = tiny_cfg(ript={"iterations": 2, "group_size": 4}, optim={"lr": 5e-4}, bc=NO_BC)
    with pytest.raises(ValueError) as info:
        Trainer(changed, resume=True)
    message = str(info.value)
    assert "optim.lr: 0.001 -> 0.0005; ript.group_size: 2 -> 4" in message
    assert "--allow-change optim.lr --allow-change ript.group_size" in message
    assert "ript.iterations" not in message  # extending a run is no change
    with Trainer(changed, resume=True, progress=False, allow_changes=("optim", "ript.group_size")):
        pass
    lines = (Path(cfg.run_dir) / HISTORY_FILE).read_text().splitlines()
    history = [json.loads(x) for x in lines]
    assert [h["resumed_from"] for h in history] == [None, "iter_000001"]
    assert history[1]["changes"] == {
        "optim.lr": [0.001, 0.0005],
        "ript.group_size": [2, 4],
    }
    assert history[1]["config"]["optim"]["lr"] == 0.0005


def test_allow_change_without_resume_is_refused(tiny_cfg, write_cfg, capsys):
    path = write_cfg(tiny_cfg())
    assert main(["train", str(path), "--allow-change", "optim.lr"]) == 2
    assert "--allow-change only means something with --resume" in capsys.readouterr().out


def test_overrides_may_follow_the_flags():
    ns = parse(
        build_parser(), ["train", "c.yaml", "--resume", "optim.lr=1e-5", "--quiet", "seed=2"]
    )
    assert ns.resume and ns.quiet and ns.overrides == ["optim.lr=1e-5", "seed=2"]
    ns = parse(build_parser(), ["demo", "--quiet", "ript.iterations=3"])
    assert ns.overrides == ["ript.iterations=3"]
    with pytest.raises(SystemExit):
        parse(build_parser(), ["train", "c.yaml", "--resume", "--nonsense"])


def test_an_install_hint_keeps_its_extra(monkeypatch, capsys):
    from ript_core.plugins import get_registry

    registry = get_registry()

    def missing(backend):
        raise RuntimeError('backend "libero" is not installed: pip install "ript-core[libero]"')

    monkeypatch.setattr(registry, "require_available", missing)
    assert main(["eval", "x", "--backend", "libero"]) == 2
    assert 'pip install "ript-core[libero]"' in capsys.readouterr().out


def test_bad_overrides_name_the_override(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 0\n")
    with pytest.raises(ConfigError, match=r"override 'optim.betas=\[0.9': line"):
        load_config(TrainConfig, path, ["optim.betas=[0.9"])
