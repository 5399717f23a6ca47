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
