"""The documentation: the plugin guide's Python runs as written, and relative links resolve."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest
import torch

from bidsfusion.layout import GroupLayout
from bidsfusion.models.base import Dims, EncoderOutput
from bidsfusion.objectives.compose import build_objective
from bidsfusion.plugins import get_plugin_manager, registered

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_GUIDE = ROOT / "docs" / "plugins.md"
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#+\s+(.*?)\s*$", re.MULTILINE)
MODALITIES = ["T1w", "falff"]


def python_blocks(path: Path) -> list[str]:
    """The ```python blocks of a markdown file, in order."""
    return [code for language, code in FENCE.findall(path.read_text()) if language == "python"]


def run_plugin_guide() -> dict[str, object]:
    """Execute every Python block of docs/plugins.md in order, in one namespace."""
    namespace: dict[str, object] = {"__name__": "plugins_md"}
    for block in python_blocks(PLUGIN_GUIDE):
        exec(compile(block, str(PLUGIN_GUIDE), "exec"), namespace)
    return namespace


def fake_outputs(batch: int = 8) -> dict[str, EncoderOutput]:
    """Encoder outputs of a 16^3 DCGAN encoder with a 64-d latent, for both modalities."""
    return {
        m: EncoderOutput(torch.randn(batch, 64), {"local": torch.randn(batch, 32, 4, 4, 4)})
        for m in MODALITIES
    }


def test_plugin_guide_runs_and_leaves_no_plugin_behind():
    assert len(python_blocks(PLUGIN_GUIDE)) >= 2
    before = {name for name, _ in get_plugin_manager().list_name_plugin()}
    namespace = run_plugin_guide()
    assert "Throwaway" in namespace and "BarlowTwins" in namespace
    assert {name for name, _ in get_plugin_manager().list_name_plugin()} == before
    assert "Throwaway" not in registered("objectives")


def test_barlow_snippet_registers_and_composes_with_s():
    namespace = run_plugin_guide()
    module = types.ModuleType("barlow_from_docs")
    module.register_objectives = namespace["register_objectives"]
    pm = get_plugin_manager()
    assert "Barlow" not in registered("objectives")
    pm.register(module, name="barlow-from-docs")
    try:
        objectives = registered("objectives")
        assert objectives["Barlow"] is namespace["BarlowTwins"]
        dims = {m: Dims((16, 16, 16), latent_dim=64, local_channels=32) for m in MODALITIES}
        objective = build_objective("S-Barlow", MODALITIES, dims, objectives)
        terms = objective(fake_outputs(), {"label": torch.zeros(8, dtype=torch.long)})
        assert {"S", "Barlow", "loss"} <= set(terms)
        assert torch.isfinite(terms["loss"])
    finally:
        pm.unregister(name="barlow-from-docs")
    assert "Barlow" not in registered("objectives")


def test_barlow_snippet_matches_the_shipped_plugin():
    shipped = pytest.importorskip("bidsfusion_barlow")
    barlow_twins = run_plugin_guide()["barlow_twins"]
    z1, z2 = torch.randn(32, 8), torch.randn(32, 8)
    assert torch.equal(barlow_twins(z1, z2, 0.1), shipped.barlow_twins(z1, z2, 0.1))


def anchors(document: Path) -> set[str]:
    """GitHub's anchors of a markdown file's headings (code blocks left out)."""
    headings = HEADING.findall(FENCE.sub("", document.read_text()))
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_to_existing_files(document: Path):
    text = FENCE.sub("", document.read_text())
    problems = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve()
        if not linked.exists():
            problems.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            problems.append(f"{target}: no heading with that anchor")
    assert not problems, f"{document.name}: {problems}"


def test_analysis_snippet_registers_and_writes_its_table(tmp_path):
    namespace = run_plugin_guide()
    pm = get_plugin_manager()
    pm.register(namespace["LatentNorms"](), name="latent-norms-from-docs")
    try:
        analysis = registered("analyses")["latent-norms"]
    finally:
        pm.unregister(name="latent-norms-from-docs")
    z = {m: torch.ones(3, 4).numpy() * 2 for m in MODALITIES}
    context = types.SimpleNamespace(
        specs=("S",),
        folds=range(1),
        modalities=tuple(MODALITIES),
        layout=GroupLayout(tmp_path),
        representations=lambda spec, fold: {f"z_{m}": v for m, v in z.items()},
    )
    analysis(context)
    lines = (tmp_path / "latent_norms.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["objective", "fold", "modality", "norm"]
    assert [float(line.split("\t")[3]) for line in lines[1:]] == [4.0, 4.0]
