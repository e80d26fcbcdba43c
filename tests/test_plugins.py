"""The plugin system: hooks, built-ins, throwaway plugins, duplicates, `bidsfusion plugins`."""

from __future__ import annotations

import pytest

from bidsfusion import hookimpl, hookspecs
from bidsfusion.errors import PluginError
from bidsfusion.plugins import KINDS, get_plugin_manager, registered


class ThrowawayObjective:
    """Registers one objective term under a unique name."""

    @hookimpl
    def register_objectives(self, register):
        register("Throwaway", lambda modalities, dims, **options: "built")


@pytest.fixture
def throwaway():
    pm = get_plugin_manager()
    pm.register(ThrowawayObjective(), name="throwaway-plugin")
    yield
    pm.unregister(name="throwaway-plugin")


def test_every_kind_has_a_documented_hook():
    for hook in KINDS.values():
        spec = getattr(hookspecs, hook)
        assert spec.__doc__ and spec.__doc__.strip()


def test_builtins_register_through_the_hooks():
    assert {"T1w", "falff"} <= set(registered("modalities"))
    assert "simpleitk" in registered("preprocessing_backends")
    assert {"L", "CL", "CS", "S", "AE", "Supervised"} <= set(registered("objectives"))
    assert "dcgan" in registered("encoders")


def test_throwaway_plugin_is_registered_and_listed(throwaway, run_cli):
    assert registered("objectives")["Throwaway"](["T1w"], {}) == "built"
    result = run_cli("plugins")
    assert result.code == 0
    block = result.out.split("throwaway-plugin", 1)[1]
    assert "objectives: Throwaway" in block.splitlines()[1]


def test_plugins_lists_builtins_with_their_distribution(run_cli):
    result = run_cli("plugins")
    assert "bidsfusion.preprocess.modalities  [bidsfusion" in result.out
    assert "modalities: T1w, falff" in result.out


class DuplicateL:
    @hookimpl
    def register_objectives(self, register):
        register("L", object())


def test_duplicate_name_names_both_plugins(run_cli):
    pm = get_plugin_manager()
    pm.register(DuplicateL(), name="dup-plugin")
    try:
        with pytest.raises(PluginError) as error:
            registered("objectives")
        assert "bidsfusion.objectives.builtin" in str(error.value)
        assert "dup-plugin" in str(error.value)
        result = run_cli("plugins")
        assert result.code == 1 and "dup-plugin" in result.err
    finally:
        pm.unregister(name="dup-plugin")


def test_plugins_lists_each_objective_term_with_its_options(run_cli) -> None:
    result = run_cli("plugins")
    assert result.code == 0
    lines = [line.strip() for line in result.out.splitlines()]
    assert "CCA: ridge=0.001, norm='trace'" in lines
    assert "L: clip=20.0, penalty_weight=0.04, located=True" in lines
    assert "Supervised: (no options)" in lines and "DCCAE: = AE-CCA" in lines
    assert any(line.startswith("MMVAE: k=4") for line in lines)


class RaisingHook:
    @hookimpl
    def register_objectives(self, register):
        raise ValueError("a bug of the plugin")


def test_a_hook_that_raises_is_a_plugin_bug_naming_the_plugin(run_cli):
    pm = get_plugin_manager()
    pm.register(RaisingHook(), name="raising-plugin")
    try:
        result = run_cli("plugins")
    finally:
        pm.unregister(name="raising-plugin")
    assert result.code == 70 and result.err.count("\n") == 1
    assert "plugin 'raising-plugin' failed in its register_objectives hook" in result.err
    assert "internal error: ValueError" not in result.err


def test_a_plugin_calling_sys_exit_on_import_is_named_not_obeyed(monkeypatch):
    from bidsfusion import plugins

    def exiting(group):
        raise SystemExit(3)

    pm = get_plugin_manager()
    monkeypatch.setattr(pm, "load_setuptools_entrypoints", exiting)
    with pytest.raises(PluginError, match=r"failed to load: it called sys.exit\(3\)"):
        plugins._load_entry_points(pm)
