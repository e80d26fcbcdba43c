"""The analysis plugin point: a throwaway analysis sees the context; selection, failures,
``--eval-only``; the built-in ``similarity`` analysis against direct CKA/SVCCA."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from runner import run_main
from test_group import GROUP_ARGS, write_group_inputs

from bidsfusion import hookimpl
from bidsfusion.analyses.similarity import SIMILARITY_COLUMNS, linear_cka, svcca
from bidsfusion.plugins import get_plugin_manager
from bidsfusion.tsv import read_tsv

pytestmark = pytest.mark.slow  # `pytest -m 'not slow'` leaves these out

SPECS = ("S", "Random")
QUICK = (*GROUP_ARGS, "--epochs", "1", "--folds", "2")


class Probe:
    """A throwaway analysis plugin that keeps what it was handed and writes one file."""

    seen: ClassVar[list] = []

    @hookimpl
    def register_analyses(self, register):
        def probe(context) -> None:
            Probe.seen.append(context)
            (context.group_dir / "probe.txt").write_text(" ".join(context.specs))

        register("probe", probe)


class Broken:
    @hookimpl
    def register_analyses(self, register):
        def broken(context) -> None:
            raise RuntimeError("planted failure")

        register("broken", broken)


def _args(root: Path, bids: Path, out: Path, *extra: object) -> list[object]:
    objectives = [a for spec in SPECS for a in ("--objective", spec)]
    return [bids, out, "group", "-w", root / "work", *objectives, *QUICK, *extra]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """One quick group run with the probe plugin registered: (root, bids, out, result)."""
    root = tmp_path_factory.mktemp("analyses")
    bids, out = write_group_inputs(root)
    pm = get_plugin_manager()
    pm.register(Probe(), name="probe-plugin")
    try:
        Probe.seen.clear()
        result = run_main(*_args(root, bids, out))
    finally:
        pm.unregister(name="probe-plugin")
    return root, bids, out, result


def test_a_throwaway_analysis_runs_with_the_context(analysed) -> None:
    _, _, out, result = analysed
    assert result.code == 0, result.err
    (context,) = Probe.seen
    assert (out / "group" / "probe.txt").read_text() == "S Random"
    assert context.group_dir == out / "group" and list(context.folds) == [0, 1]
    assert context.modalities == ("T1w", "falff")
    assert len(context.evaluation) == len(SPECS) * 2 * 2
    assert {context.labels[s] for s in context.labels} == {1, 0, -1}
    for fold in context.folds:
        volumes = context.volumes("S", fold)
        arrays = context.representations("S", fold)
        assert list(volumes.subjects) == list(arrays["subject"])
        with torch.no_grad():
            outputs = context.model("S", fold)(volumes.volumes)
        for m in context.modalities:
            np.testing.assert_allclose(
                outputs[m].latent.cpu().numpy(), arrays[f"z_{m}"], rtol=1e-4, atol=1e-5
            )


def test_similarity_table_equals_direct_measures(analysed) -> None:
    _, _, out, _ = analysed
    columns, rows = read_tsv(out / "group" / "similarity.tsv")
    assert tuple(columns) == SIMILARITY_COLUMNS
    assert len(rows) == len(SPECS) * 2 * 3  # objectives x folds x (AD, HC, all)
    context = Probe.seen[0]
    for row in rows:
        arrays = context.representations(row["objective"], int(row["fold"]))
        chosen = slice(None) if row["group"] == "all" else arrays["group"] == row["group"]
        x, y = arrays["z_T1w"][chosen], arrays["z_falff"][chosen]
        assert row["modalities"] == "T1w-falff" and int(row["n"]) == len(x)
        assert float(row["cka"]) == pytest.approx(linear_cka(x, y), rel=1e-6)
        assert float(row["cka_biased"]) == pytest.approx(linear_cka(x, y, False), rel=1e-6)
        assert float(row["svcca"]) == pytest.approx(svcca(x, y), rel=1e-6)
        for measure in ("cka", "svcca"):
            assert 0 < float(row[f"{measure}_p"]) <= 1
            assert np.isfinite(float(row[f"{measure}_null"]))
        assert int(row["n_equal"]) == 6  # the smaller group: 6 AD subjects
        if row["group"] == "AD":
            assert float(row["svcca_equal_n"]) == pytest.approx(float(row["svcca"]), rel=1e-6)


def test_none_skips_and_an_unknown_name_is_64(analysed, run_cli) -> None:
    root, bids, out, _ = analysed
    (out / "group" / "similarity.tsv").unlink()
    skipped = run_cli(*_args(root, bids, out, "--eval-only", "--analysis", "none"))
    assert skipped.code == 0, skipped.err
    assert not (out / "group" / "similarity.tsv").exists()
    unknown = run_cli(*_args(root, bids, out, "--eval-only", "--analysis", "nope"))
    assert unknown.code == 64
    choices = "confounds, group-differences, saliency, similarity, or none"
    assert f"--analysis nope: choose among {choices}" in unknown.err


def test_a_plugin_bug_in_an_analysis_is_70_naming_the_plugin(analysed, run_cli) -> None:
    root, bids, out, _ = analysed
    pm = get_plugin_manager()
    pm.register(Broken(), name="broken-plugin")
    try:
        result = run_cli(*_args(root, bids, out, "--eval-only", "--analysis", "broken",
                                "--analysis", "similarity"))  # fmt: skip
    finally:
        pm.unregister(name="broken-plugin")
    assert result.code == 70
    assert "analysis broken failed: a bug in plugin 'broken-plugin': RuntimeError: planted" in (
        result.err
    )
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("bidsfusion: error: analysis broken (plugin 'broken-plugin') failed")
    assert "internal error of the plugin's own code" in last
    assert (out / "group" / "similarity.tsv").exists()


def test_an_analysis_of_a_missing_model_is_66_naming_it(analysed, run_cli) -> None:
    root, bids, out, _ = analysed
    checkpoint = out / "group" / "objective-S" / "fold-0" / "model.safetensors"
    aside = checkpoint.with_name("aside.safetensors")
    checkpoint.rename(aside)
    try:
        result = run_cli(*_args(root, bids, out, "--eval-only", "--analysis", "saliency"))
    finally:
        aside.rename(checkpoint)
    assert result.code == 66, result.err
    assert f"{checkpoint} is missing: the group level without --eval-only writes it again" in (
        result.err
    )
    assert result.err.strip().splitlines()[-1].startswith("bidsfusion: error: analysis saliency")


def test_saliency_maps_in_brain_space_and_the_crossmodal_pair(analysed) -> None:
    import json

    import nibabel as nib

    from bidsfusion.analyses.fast_gradients import fast_input_gradients
    from bidsfusion.analyses.saliency import brain_saliency
    from bidsfusion.space import MNI_GRID_AFFINE, brain_coverage

    _, _, out, _ = analysed
    context = Probe.seen[0]
    folder = out / "group" / "saliency" / "objective-S"
    for modality in context.modalities:
        for group in ("AD", "HC", "all"):
            image = nib.load(folder / f"fold-0_desc-{modality}_group-{group}_saliency.nii.gz")
            data = np.asarray(image.dataobj)
            assert data.shape == (64, 64, 64, 8) and np.allclose(image.affine, MNI_GRID_AFFINE)
            assert np.isfinite(data).all() and data.min() >= 0 and data.max() <= 1
            assert data.max() > 0
            sidecar = json.loads((folder / f"fold-0_desc-{modality}_group-{group}_saliency.json")
                                 .read_text())  # fmt: skip
            assert sidecar["Samples"] == 5 and sidecar["NoiseFraction"] == 0.05
    model, volumes = context.model("S", 0), context.volumes("S", 0)
    generator = torch.Generator().manual_seed(context.seed)
    maps = {}
    with fast_input_gradients(model):
        for m in context.modalities:
            encoder = model.encoders[m]
            saliency = brain_saliency(
                lambda v, e=encoder: e(v).latent, volumes.volumes[m], generator
            )
            maps[m] = saliency.numpy()
    inside = (brain_coverage(16) >= 0.5).reshape(-1)
    a, b = (maps[m].reshape(len(maps[m]), 8, -1)[:, :, inside] for m in context.modalities)
    _, rows = read_tsv(folder / "crossmodal.tsv")
    assert len(rows) == 64
    values = [float(r["link"]) for r in rows]
    assert values == sorted(values, reverse=True)
    for row in rows[:5]:
        i, j = int(row["T1w_dim"]), int(row["falff_dim"])
        with np.errstate(invalid="ignore", divide="ignore"):
            per_voxel = [np.corrcoef(a[:, i, v], b[:, j, v])[0, 1] for v in range(a.shape[2])]
        expected = np.nan_to_num(per_voxel).mean()  # a constant voxel counts as 0
        assert float(row["link"]) == pytest.approx(expected, abs=1e-6)
    best = json.loads((folder / "crossmodal.json").read_text())
    assert best["permutations"] == 200 and 0 < best["p"] <= 1 and best["subjects"] == 19
    assert (best["T1w_dim"], best["falff_dim"]) == (int(rows[0]["T1w_dim"]),
                                                    int(rows[0]["falff_dim"]))  # fmt: skip
    all_mean = np.asarray(nib.load(folder / best["maps"]["T1w"]).dataobj)
    assert all_mean.shape[-1] == 8


def test_a_rerun_removes_what_a_killed_saliency_run_left(analysed, run_cli) -> None:
    root, bids, out, _ = analysed
    folder = out / "group" / "saliency" / "objective-S"
    stale = folder / ".fold-0_desc-T1w_group-AD_saliency.0123456789ab.nii.gz"
    stale.write_bytes(b"half a file")
    result = run_cli(*_args(root, bids, out, "--eval-only", "--analysis", "saliency"))
    assert result.code == 0, result.err
    assert not stale.exists()
    assert (folder / "fold-0_desc-T1w_group-AD_saliency.nii.gz").exists()
