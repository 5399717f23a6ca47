import attrs
import pytest

from ript_core.config import ConfigError, dump_config, load_config, structure


@attrs.define
class Optim:
    lr: float = 1e-4
    betas: list[float] = attrs.Factory(lambda: [0.9, 0.999])


@attrs.define
class Run:
    name: str = "demo"
    iterations: int = 10
    use_bc: bool = True
    optim: Optim = attrs.Factory(Optim)
    tasks: list[str] = attrs.Factory(list)


def test_yaml_round_trip(tmp_path):
    cfg = Run(name="x", iterations=3, use_bc=False, optim=Optim(lr=3e-5), tasks=["a", "b"])
    path = tmp_path / "run.yaml"
    dump_config(cfg, path)
    assert load_config(Run, path) == cfg
    assert dump_config(load_config(Run, path)) == path.read_text()


def test_overrides_are_parsed_as_yaml(tmp_path):
    path = tmp_path / "run.yaml"
    dump_config(Run(), path)
    cfg = load_config(Run, path, ["optim.lr=2e-3", "iterations=7", "tasks=[x, y]"])
    assert cfg.optim.lr == 2e-3 and cfg.iterations == 7 and cfg.tasks == ["x", "y"]


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"optim\.learning_rate: unknown key"):
        structure(Run, {"optim": {"learning_rate": 1.0}})
    with pytest.raises(ConfigError, match=r"iters: unknown key"):
        structure(Run, {"iters": 1})


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"optim\.lr: expected float, got 'fast'"):
        structure(Run, {"optim": {"lr": "fast"}})
    with pytest.raises(ConfigError, match=r"iterations: expected int, got 2\.5"):
        structure(Run, {"iterations": 2.5})
    with pytest.raises(ConfigError, match=r"use_bc: expected bool, got 'yes'"):
        structure(Run, {"use_bc": "yes"})


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Run, tmp_path / "nope.yaml")


def test_a_run_without_a_source_of_normalisation_stats_is_refused_with_the_three_fixes():
    """RIPT from policy.preset with no checkpoint and no BC demos has no
    stats for the env: refused before anything is built, naming each way to
    get them; each of the three makes the config valid."""
    import pytest

    from ript_core.policy.config import PolicyConfig
    from ript_core.rl.config import BCSection, TrainConfig

    with pytest.raises(ValueError) as exc:
        TrainConfig().check()
    msg = str(exc.value)
    assert "no normalisation stats" in msg
    for fix in ("bc.steps", "bc.demos_file", "init_checkpoint", "policy.state_dim"):
        assert fix in msg
    TrainConfig(bc=BCSection(steps=10, demos_per_task=2)).check()
    TrainConfig(bc=BCSection(steps=10, demos_file="demos.npz")).check()
    TrainConfig(init_checkpoint="ckpt").check()
    TrainConfig(policy=PolicyConfig(state_dim=3, action_dim=3)).check()
