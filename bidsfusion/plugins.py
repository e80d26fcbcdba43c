"""The plugin manager: built-in plugins plus the ``bidsfusion`` entry-point group.

Built-in parts register through the same hooks as third-party packages; the
modules listed in :data:`BUILTIN_PLUGINS` are simply loaded first. Set
``BIDSFUSION_DISABLE_PLUGIN_AUTOLOAD=1`` to skip entry points (tests do). Each
registry is built once per process, and again only when a plugin is registered or
unregistered (a test's throwaway plugin) or after :func:`refresh`.
"""

from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass, field
from typing import Any

import pluggy

from bidsfusion import hookspecs
from bidsfusion.errors import BidsFusionError, PluginBugError, PluginError

ENTRY_POINT_GROUP = "bidsfusion"
DISABLE_AUTOLOAD = "BIDSFUSION_DISABLE_PLUGIN_AUTOLOAD"

BUILTIN_PLUGINS: tuple[str, ...] = (
    "bidsfusion.preprocess.modalities",
    "bidsfusion.preprocess.backend",
    "bidsfusion.models.builtin",
    "bidsfusion.objectives.builtin",
    "bidsfusion.analyses.builtin",
)

KINDS: dict[str, str] = {
    "modalities": "register_modalities",
    "encoders": "register_encoders",
    "objectives": "register_objectives",
    "analyses": "register_analyses",
    "preprocessing_backends": "register_preprocessing_backends",
}
"""Registry kind -> the hook that fills it."""


class _PluginManager(pluggy.PluginManager):
    """pluggy's manager, forgetting the registries whenever a plugin comes or goes."""

    def register(self, plugin: object, name: str | None = None) -> str | None:
        refresh()
        return super().register(plugin, name)

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        refresh()
        return super().unregister(plugin, name)


@functools.cache
def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built-ins and entry points loaded."""
    pm = _PluginManager("bidsfusion")
    pm.add_hookspecs(hookspecs)
    for module_name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
    if not os.environ.get(DISABLE_AUTOLOAD):
        _load_entry_points(pm)
    return pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    try:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    except (Exception, SystemExit) as exc:
        reason = f"it called sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else exc
        raise PluginError(
            f"a '{ENTRY_POINT_GROUP}' entry-point plugin failed to load: {reason}; "
            f"uninstall it or set {DISABLE_AUTOLOAD}=1"
        ) from exc


def registered(kind: str) -> dict[str, Any]:
    """Everything registered for ``kind`` (a key of :data:`KINDS`), by name.

    Raises :class:`PluginError` naming both plugins when a name is registered twice.
    """
    return {name: thing for name, (thing, _) in _collect(kind).items()}


def owner(kind: str, name: str) -> str:
    """The name of the plugin that registered ``name`` for ``kind``."""
    return _collect(kind)[name][1]


_REGISTRIES: dict[str, dict[str, tuple[Any, str]]] = {}
"""kind -> name -> (thing, plugin name), built on first use."""


def refresh() -> None:
    """Forget every registry: the next :func:`registered` calls the hooks again (done
    whenever a plugin is registered or unregistered)."""
    _REGISTRIES.clear()


def _collect(kind: str) -> dict[str, tuple[Any, str]]:
    if kind not in _REGISTRIES:
        caller = getattr(get_plugin_manager().hook, KINDS[kind])
        found: dict[str, tuple[Any, str]] = {}
        for impl in reversed(caller.get_hookimpls()):
            _call_impl(impl, kind, found)
        _REGISTRIES[kind] = found
    return _REGISTRIES[kind]


def _call_impl(impl: Any, kind: str, found: dict[str, tuple[Any, str]]) -> None:
    def register(name: str, thing: Any) -> None:
        if name in found:
            raise PluginError(
                f"{kind[:-1] if kind.endswith('s') else kind} {name!r} is registered twice: "
                f"by plugin {found[name][1]!r} and by plugin {impl.plugin_name!r}; "
                "uninstall one of them"
            )
        found[name] = (thing, impl.plugin_name)

    try:
        impl.function(register=register)
    except BidsFusionError:
        raise
    except Exception as exc:
        raise PluginBugError(
            f"plugin {impl.plugin_name!r} failed in its {KINDS[kind]} hook with an internal "
            f"error of its own code: {exc!r}; report it to the plugin's authors, or uninstall it"
        ) from exc


@dataclass(frozen=True)
class PluginInfo:
    """One plugin: its name, its distribution and what it registers, by kind."""

    name: str
    distribution: str
    registrations: dict[str, list[str]] = field(default_factory=dict)


def plugin_infos() -> list[PluginInfo]:
    """Every loaded plugin with what it registers, built-ins first."""
    pm = get_plugin_manager()
    owners: dict[str, dict[str, list[str]]] = {}
    for kind in KINDS:
        for name, (_, plugin_name) in _collect(kind).items():
            owners.setdefault(plugin_name, {}).setdefault(kind, []).append(name)
    dists = {
        pm.get_name(plugin): f"{d.project_name} {d.version}"
        for plugin, d in pm.list_plugin_distinfo()
    }
    infos = []
    for plugin_name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist = dists.get(plugin_name) or _builtin_or_unknown(plugin_name)
        infos.append(PluginInfo(plugin_name, dist, owners.get(plugin_name, {})))
    return infos


def _builtin_or_unknown(plugin_name: str) -> str:
    if plugin_name in BUILTIN_PLUGINS:
        from bidsfusion import __version__

        return f"bidsfusion {__version__} (built-in)"
    return "(registered at run time)"
