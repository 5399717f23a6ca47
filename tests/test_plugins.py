"""Plugin discovery through entry points: built-ins, a real third-party
package, a broken plugin, tracing."""

import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from ript_core import (
    Availability,
    BackendFootprint,
    BackendSpec,
    ExpertSignatureError,
    TaskInfo,
    hookimpl,
)
from ript_core.plugins import (
    ENTRY_POINT_GROUP,
    BackendNotFoundError,
    BackendUnavailableError,
    PluginRegistry,
    get_registry,
    make_env,
)
from tests.plugins.backend_contract import install_example_plugin


def run_py(code: str, extra_path: list[Path], env_extra: dict | None = None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(p) for p in extra_path] + [env.get("PYTHONPATH", "")])
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def write_dist(site: Path, name: str, module_src: str, ep_name: str, extras=()) -> None:
    """Install a minimal distribution by hand: a module plus a dist-info
    carrying an entry point, exactly what pip would leave behind."""
    (site / f"{name}.py").write_text(textwrap.dedent(module_src))
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    extra_lines = "".join(f"Provides-Extra: {e}\n" for e in extras)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n{extra_lines}"
    )
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{ep_name} = {name}\n")


def installed_backends() -> list[str]:
    """Backends of the plugins installed in this environment (no test plugins)."""
    reg = PluginRegistry()
    reg.load_entry_points()
    return reg.backends()


def test_builtin_toy_is_registered_through_the_entry_point_group():
    eps = {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert eps.get("toy") == "ript_core.envs.toy.plugin"
    reg = PluginRegistry()
    reg.load_entry_points()
    assert "toy" in reg.backends()
    assert reg.owner("toy") == "toy"
    assert len(reg.catalogue("toy")) == 4


def test_example_third_party_plugin_installs_and_is_discovered(repo_root, tmp_path):
    site = tmp_path / "site"
    install_example_plugin(repo_root, site)
    proc = run_py(
        """
        from ript_core.plugins import get_registry
        from ript_core import check_backend, validate_observation
        reg = get_registry()
        print(sorted(reg.backends()))
        env = reg.make_env("gridworld", "walk-5x5")
        obs, info = env.reset(options={"init_state": 3})
        validate_observation(obs, "gridworld")
        obs_adapter, act_adapter = reg.default_adapters("gridworld", "walk-5x5")
        print(sorted(obs_adapter(obs).images), act_adapter([[0.9, -0.2, 5.0]]).tolist())
        print(check_backend("gridworld"), reg.footprint("gridworld").env_ram_bytes)
        # the guide's option example: cell_px sizes the images; bad values are refused
        env = reg.make_env("gridworld", "walk-5x5", {"cell_px": 4})
        print(env.reset(options={"init_state": 3})[0]["images"]["top"].shape)
        for bad in ({"cell_px": 0}, {"cellpx": 4}):
            try:
                reg.make_env("gridworld", "walk-5x5", bad)
            except ValueError as exc:
                print("refused:", exc)
        """,
        [site],
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    # ript-core's own entry points (toy, libero) plus the third-party one
    assert lines[0] == str(sorted({*installed_backends(), "gridworld"}))
    assert lines[1] == "['base_0_rgb'] [[0.8999999761581421, -0.20000000298023224]]"
    assert lines[2] == "[] 30000000"  # keeps the contract; declares its planner footprint
    assert lines[3] == "(20, 20, 3)"
    assert lines[4] == "refused: gridworld: cell_px must be in 1..64, got 0"
    assert lines[5].startswith("refused: ") and "cellpx" in lines[5]


def test_broken_plugin_is_named_with_its_fix_and_others_still_load(tmp_path):
    write_dist(tmp_path, "ript_broken_sim", "import simulator_that_is_not_installed\n", "brokensim")
    proc = run_py(
        """
        from ript_core.plugins import get_registry
        reg = get_registry()
        print(reg.backends())
        print(len(reg.catalogue("toy")))
        for b in reg.broken:
            print(b.name, "|", b.error, "|", b.install)
        """,
        [tmp_path],
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0] == str(installed_backends())
    assert out[1] == "4"
    assert (
        "brokensim | ModuleNotFoundError: No module named 'simulator_that_is_not_installed'"
        " | install the module 'simulator_that_is_not_installed' that the plugin package"
        " ript_broken_sim imports"
    ) in out[2:]
    # and the CLI shows it instead of a traceback
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    cli = subprocess.run(
        [sys.executable, "-m", "ript_core", "plugins"], capture_output=True, text=True, env=env
    )
    assert cli.returncode == 0, cli.stderr
    assert "brokensim" in cli.stdout and "failed to load" in cli.stdout
    assert "Traceback" not in cli.stdout + cli.stderr


def test_plugin_named_after_an_extra_gets_the_extra_install_line(tmp_path):
    # (named "mysim": ript-core's own "libero" entry point would take "libero" first)
    write_dist(tmp_path, "ript_extra_sim", "import missing_sim\n", "mysim", extras=["mysim"])
    proc = run_py(
        "from ript_core.plugins import get_registry\n"
        "print(*[b.install for b in get_registry().broken if b.name == 'mysim'])",
        [tmp_path],
    )
    assert proc.stdout.strip() == (
        'pip install "ript_extra_sim[mysim]" (from a clone: pip install -e ".[mysim]")'
    ), proc.stderr


def test_hook_tracing_env_var_prints_hook_calls(tmp_path):
    proc = run_py(
        "from ript_core.plugins import get_registry\nget_registry().catalogue('toy')",
        [],
        {"RIPT_TRACE_HOOKS": "1"},
    )
    assert proc.returncode == 0
    # the discovery hook, then the spec call the registry made, with its result
    assert "toy.ript_backends()" in proc.stderr
    assert "toy.catalogue()" in proc.stderr
    assert "toy.catalogue -> [TaskInfo(name='reach-red'" in proc.stderr


class UnavailableSpec(BackendSpec):
    name = "fakesim"

    def availability(self):
        return Availability.missing("fakesim is not installed", 'pip install "ript-core[fakesim]"')

    def catalogue(self):
        return [TaskInfo("t", "do it", 1, 10)]


class UnavailablePlugin:
    @hookimpl
    def ript_backends(self):
        return [UnavailableSpec()]


def test_unavailable_backend_fails_before_any_work_with_the_install_line():
    reg = PluginRegistry()
    reg.load_entry_points()
    reg.register(UnavailablePlugin(), name="fakesim-plugin")
    assert reg.availability("toy").available
    with pytest.raises(BackendUnavailableError, match=r'fix: pip install "ript-core\[fakesim\]"'):
        reg.make_env("fakesim", "t")


def test_two_plugins_claiming_one_backend_is_an_error():
    reg = PluginRegistry()
    reg.load_entry_points()

    class ToyAgain(BackendSpec):
        name = "toy"

    class Impostor:
        @hookimpl
        def ript_backends(self):
            return [ToyAgain()]

    with pytest.raises(ValueError, match="already provided by plugin 'toy'"):
        reg.register(Impostor(), name="impostor")
    assert reg.spec("toy") is not None and not isinstance(reg.spec("toy"), ToyAgain)
    assert reg.owner("toy") == "toy" and "impostor" not in [n for n, _ in reg.pm.list_name_plugin()]


def test_unknown_backend_task_and_env_id_errors_name_the_problem():
    with pytest.raises(BackendNotFoundError, match="no backend named 'nosuch' \\(installed: .*toy"):
        get_registry().catalogue("nosuch")
    with pytest.raises(KeyError, match="has no task 'reach-purple'"):
        make_env("toy/reach-purple")
    with pytest.raises(ValueError, match="must look like '<backend>/<task>'"):
        make_env("toy")
    with pytest.raises(ValueError, match="unknown env options \\['colour'\\]"):
        make_env("toy/reach-red", colour="red")


def test_a_plugin_on_the_old_contract_is_listed_as_broken_with_its_fix(tmp_path):
    write_dist(
        tmp_path,
        "ript_old_sim",
        """
        from ript_core import hookimpl

        @hookimpl
        def ript_backends():
            return ["oldsim"]
        """,
        "oldsim",
    )
    proc = run_py(
        """
        from ript_core.plugins import get_registry
        reg = get_registry()
        print(len(reg.catalogue("toy")), "oldsim" in reg.backends())
        for b in reg.broken:
            print(b.name, "|", b.error, "|", b.install)
        """,
        [tmp_path],
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0] == "4 False"
    assert (
        "oldsim | ript_core.plugins.PluginContractError: plugin 'oldsim': ript_backends() must return "
        "ript_core.BackendSpec objects, got 'oldsim' (see docs/writing-a-plugin.md) | "
        "pip install -U ript_old_sim"
    ) in out[1:]


def test_specs_answer_for_themselves_through_the_registry():
    reg = get_registry()
    spec = reg.spec("toy")
    assert isinstance(spec, BackendSpec) and spec.name == "toy"
    assert spec.footprint == BackendFootprint("toy", 20_000_000, 0.0003)
    assert reg.footprint("toy") is spec.footprint
    with pytest.raises(BackendNotFoundError, match="no backend named 'nosuch'"):
        reg.spec("nosuch")


def test_the_planner_footprints_of_the_builtin_backends():
    reg = get_registry()
    expected = {
        "libero": BackendFootprint("libero", 1_000_000_000, 0.19, unread_step_seconds=0.01),
        "maniskill": BackendFootprint("maniskill", 500_000_000, 0.035, unread_step_seconds=0.005),
        "robosuite": BackendFootprint("robosuite", 500_000_000, 0.2, unread_step_seconds=0.02),
    }
    for name in set(expected) & set(reg.backends()):  # whichever extras are installed
        assert reg.footprint(name) == expected[name]


class BareSpec(BackendSpec):
    name = "bare"

    def catalogue(self):
        return [TaskInfo("t", "do it", 1, 10)]

    def scripted_expert(self, task):
        return lambda env, rng: None  # one argument short


class BarePlugin:
    @hookimpl
    def ript_backends(self):
        return [BareSpec()]


def test_no_footprint_plans_as_a_heavy_simulator_and_says_so(caplog):
    reg = PluginRegistry()
    reg.register(BarePlugin(), name="bare-plugin")
    with caplog.at_level("WARNING", logger="ript_core.plugins"):
        assert reg.footprint("bare") == BackendFootprint("bare", 1_000_000_000, 0.19)
    assert "backend 'bare' declares no footprint" in caplog.text


def test_an_expert_with_the_wrong_signature_fails_with_the_one_it_needs():
    reg = PluginRegistry()
    reg.register(BarePlugin(), name="bare-plugin")
    with pytest.raises(
        ExpertSignatureError,
        match=r"backend 'bare': the scripted expert for 't' must be callable as "
        r"expert\(env, rng, noise\) -> action; <lambda>\(env, rng\) does not accept that",
    ):
        reg.scripted_expert("bare", "t")
