"""``bidsfusion.api``: the only bidsfusion module plugins import, typed, loaded on first use;
the registry is built once per set of plugins."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bidsfusion import api

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_SOURCES = sorted(ROOT.glob("plugins/*/bidsfusion_*/**/*.py"))
FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def bidsfusion_imports(tree: ast.AST) -> list[str]:
    """Every bidsfusion module a source imports (``import`` and ``from`` forms, anywhere)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [m for m in found if m == "bidsfusion" or m.startswith("bidsfusion.")]


def test_the_plugin_packages_import_only_the_api() -> None:
    assert len(PLUGIN_SOURCES) >= 8
    wrong = {}
    for path in PLUGIN_SOURCES:
        modules = bidsfusion_imports(ast.parse(path.read_text()))
        if set(modules) - {"bidsfusion.api"}:
            wrong[str(path.relative_to(ROOT))] = modules
    assert not wrong, wrong


def test_the_plugin_guide_imports_only_the_api() -> None:
    blocks = FENCE.findall((ROOT / "docs" / "plugins.md").read_text())
    assert len(blocks) >= 3
    modules = {m for block in blocks for m in bidsfusion_imports(ast.parse(block))}
    assert modules == {"bidsfusion.api"}


def test_a_planted_internal_import_is_caught() -> None:
    tree = ast.parse("def f():\n    from bidsfusion.preprocess.engine import crash_report\n")
    assert bidsfusion_imports(tree) == ["bidsfusion.preprocess.engine"]


def test_every_public_name_resolves_and_the_type_checking_imports_match() -> None:
    for name in api.__all__:
        assert getattr(api, name) is not None, name
    source = ast.parse(Path(api.__file__).read_text())
    block = next(n for n in source.body if isinstance(n, ast.If))  # if TYPE_CHECKING:
    typed = {
        (node.module, alias.name)
        for node in ast.walk(block)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    lazy = {(module, name) for module, names in api._HOME.items() for name in names}
    assert typed == lazy
    with pytest.raises(AttributeError, match=r"bidsfusion\.api has no 'crash'"):
        api.crash  # noqa: B018


def test_a_light_name_does_not_import_torch_or_nipype() -> None:
    code = (
        "import sys\nfrom bidsfusion.api import hookimpl, UsageError, ModalityRegister\n"
        "print(sorted(m for m in ('torch', 'nipype') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_registry_is_built_once_per_set_of_plugins() -> None:
    calls = []

    class Counting:
        @staticmethod
        @api.hookimpl
        def register_encoders(register):
            calls.append(1)
            register("counted", lambda in_shape, latent_dim: None)

    pm = api.plugin_manager()
    pm.register(Counting, name="counting")
    try:
        assert "counted" in api.registered("encoders")
        assert "counted" in api.registered("encoders")
        assert len(calls) == 1
    finally:
        pm.unregister(name="counting")
    assert "counted" not in api.registered("encoders")


def test_an_encoder_that_is_not_a_module_is_a_plugin_error() -> None:
    from bidsfusion.models.multimodal import MultimodalModel

    with pytest.raises(api.PluginError, match=r"returned a NoneType, not an nn\.Module"):
        MultimodalModel(["T1w"], lambda in_shape, latent_dim: None, (16, 16, 16), 8)
    encoder = api.registered("encoders")["dcgan"]((16, 16, 16), 8)
    assert isinstance(encoder, api.Encoder) and isinstance(encoder, torch.nn.Module)
