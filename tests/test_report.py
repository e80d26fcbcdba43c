"""group/report.html: one self-contained file whose every image is an embedded PNG that a
browser renders; absent analyses say "not run", malformed inputs a one-line message."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from runner import run_main

from bidsfusion import hookimpl
from bidsfusion.analyses.confounds import CONTROLLED_COLUMNS, PROBE_COLUMNS
from bidsfusion.analyses.similarity import SIMILARITY_COLUMNS
from bidsfusion.errors import InputDataError
from bidsfusion.evaluate.summary import SUMMARY_COLUMNS
from bidsfusion.layout import GroupLayout
from bidsfusion.report.html import write_report
from bidsfusion.space import MNI_GRID_AFFINE
from bidsfusion.train.summary import SUMMARY_COLUMNS as TRAINING_COLUMNS
from bidsfusion.tsv import write_tsv

IMG = re.compile(r"<img\b[^>]*>")
SRC = re.compile(r'src="([^"]*)"')
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
GROUPS = {"01": "AD", "02": "AD", "03": "AD", "04": "HC", "05": "HC", "06": "HC", "07": "<b>x&y"}


def _blob(centre: tuple[int, int, int], dims: int) -> np.ndarray:
    i, j, k = np.meshgrid(*(np.arange(64),) * 3, indexing="ij")
    distance = (i - centre[0]) ** 2 + (j - centre[1]) ** 2 + (k - centre[2]) ** 2
    blob = np.exp(-distance / 60.0).astype(np.float32)
    blob[blob < 0.05] = 0  # saliency is 0 outside the brain
    return np.stack([blob * (d + 1) / dims for d in range(dims)], axis=-1)


def _nifti(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, MNI_GRID_AFFINE), path)


def _history(path: Path, epochs: int, fold: int) -> None:
    t = np.arange(1, epochs + 1, dtype=float)
    columns = {
        "epoch": t,
        "train_loss": 30 - t / 10 - fold,
        "train_L": 15 - t / 20,
        "train_L_chance": np.full(epochs, 14.9),
        "val_loss": 31 - t / 12,
        "val_L": 15.5 - t / 30,
        "val_L_chance": np.full(epochs, 15.6),
        "val_retrieval_T1w_falff": 0.05 + t / 200,
        "val_critic_CL_T1w_falff": 0.05 + t / 100,
        "val_retrieval_chance": np.full(epochs, 0.05),
        "lr": np.full(epochs, 4e-4),
        "seconds": np.full(epochs, 0.5),
    }
    columns["train_loss"][3] = 1e4  # a spike: the panel clips it
    write_tsv(path, list(columns), np.column_stack(list(columns.values())).tolist())


def fabricate(group: Path) -> Path:
    """A small finished group run: every input of every report section."""
    group.mkdir(parents=True)
    (group / "config.toml").write_text(
        '[record]\nexpanded_objectives = ["L-CL", "Random", "S"]\n'
        '[execution]\nseed = 0\n[data]\npositive = "AD"\nnegative = "HC"\n'
        'modality = ["T1w", "falff"]\n[train]\nflip_axes = "all"\nmax_shift = 9\n'
    )
    write_tsv(
        group / "pairs.tsv",
        ["subject", "group", "role"],
        [[s, g, "pretrain+evaluation"] for s, g in GROUPS.items()],
    )
    splits = {
        "seed": 0,
        "n_folds": 2,
        "holdout": ["01", "04"],
        "folds": [
            {"train": ["02", "05", "07"], "validation": ["03", "06"]},
            {"train": ["03", "06", "07"], "validation": ["02", "05"]},
        ],
    }
    (group / "splits.json").write_text(json.dumps(splits))
    summary = [
        ["L-CL", "T1w", 2, 0.7, 0.05, True, 0.031],
        ["L-CL", "falff", 2, 0.6, 0.1, False, 0.8],
        ["Random", "T1w", 2, 0.55, 0.02, None, None],
        ["Random", "falff", 2, 0.65, 0.1, None, None],
        ["S", "T1w", 1, 0.5, None, False, None],
        ["S", "falff", 1, 0.52, None, False, None],
    ]
    write_tsv(group / "evaluation_summary.tsv", SUMMARY_COLUMNS, summary)
    write_tsv(
        group / "similarity.tsv",
        SIMILARITY_COLUMNS,
        [
            [o, f, "T1w-falff", g, 3, 0.1 * f + 0.05, 0.5, 0.8, 0.1, 0.2, 0.9, 0.6, 3, 0.05, 0.8]
            for o in ("L-CL", "Random")
            for f in (0, 1)
            for g in ("AD", "HC", "all")
        ],
    )
    training = [
        ["L-CL", 0, 20, 18, 31.0, None, 0.2, 0.05, 0.35, 0.3, 0.25, False, None],
        ["L-CL", 1, 20, 5, 31.5, "L", 0.05, 0.05, None, 0.6, 0.1, True, "L"],
    ]
    write_tsv(group / "training_summary.tsv", TRAINING_COLUMNS, training)
    for fold in (0, 1):
        (group / "objective-L-CL" / f"fold-{fold}").mkdir(parents=True)
        _history(group / "objective-L-CL" / f"fold-{fold}" / "history.tsv", 20, fold)
        (group / "objective-Random" / f"fold-{fold}").mkdir(parents=True)
        (group / "objective-Random" / f"fold-{fold}" / "model.json").write_text('{"trains": false}')
    saliency = group / "saliency" / "objective-L-CL"
    for modality, centre in (("T1w", (24, 40, 40)), ("falff", (40, 30, 34))):
        _nifti(saliency / f"fold-0_desc-{modality}_group-all_saliency.nii.gz", _blob(centre, 3))
    crossmodal = {
        "T1w_dim": 2,
        "falff_dim": 1,
        "link": 0.42,
        "p": 0.01,
        "null_95": 0.2,
        "maps": {m: f"fold-0_desc-{m}_group-all_saliency.nii.gz" for m in ("T1w", "falff")},
    }
    (saliency / "crossmodal.json").write_text(json.dumps(crossmodal))
    control = group / "saliency" / "objective-Random"
    control.mkdir(parents=True)
    (control / "crossmodal.json").write_text(
        json.dumps({**crossmodal, "link": 0.18, "p": 0.4, "T1w_dim": 0})
    )
    differences = group / "group-differences" / "objective-L-CL"
    rbc = _blob((24, 40, 40), 1)[..., 0] * 0.8 - _blob((40, 30, 34), 1)[..., 0] * 0.6
    _nifti(differences / "fold-0_desc-T1w_dim-3_stat-rbc_saliency.nii.gz", rbc)
    _nifti(differences / "fold-0_desc-T1w_dim-3_stat-q_saliency.nii.gz", np.abs(rbc))
    write_tsv(
        differences / "peaks.tsv",
        ["x", "y", "z", "rbc", "q"],
        [[-22.5, 8.5, 30.5, 0.8, 0.01], [25.5, -21.5, 12.5, -0.6, 0.04]],
    )
    probes = [
        [o, m, f, v, kind, "participants.tsv", metric, chance, score + 0.01 * f, null, 0.01, 20, 10]
        for o, score in (("L-CL", 0.93), ("Random", 0.71), ("raw voxels", 0.97))
        for m in ("T1w", "falff")
        for f in (0, 1)
        for v, kind, metric, chance, null in (
            ("site", "categorical", "roc_auc", 0.5, 0.72),
            ("age", "continuous", "r2", 0.0, 0.05),
        )
    ]
    write_tsv(group / "confounds.tsv", PROBE_COLUMNS, probes)
    controlled = [
        [o, "T1w", f, control, site, confounds, auc, 20, 10]
        for o in ("L-CL", "Random")
        for f in (0, 1)
        for control, site, confounds, auc in (
            ("none", "n/a", "n/a", 0.81),
            ("regressed", "n/a", "age site", 0.52),
            ("leave-site-out", "A", "n/a", 0.6),
            ("leave-site-out", "B", "n/a", 0.5),
        )
    ]
    write_tsv(group / "controlled_evaluation.tsv", CONTROLLED_COLUMNS, controlled)
    return group


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the fabricated run (written once for the module)."""
    group = fabricate(tmp_path_factory.mktemp("run") / "group")
    return write_report(GroupLayout(group))


def images(text: str) -> list[bytes]:
    """The decoded data of every ``<img>``; each must be an embedded PNG."""
    found = []
    for tag in IMG.findall(text):
        source = SRC.search(tag).group(1)
        assert source.startswith("data:image/png;base64,"), source[:40]
        found.append(base64.b64decode(source.split(",", 1)[1], validate=True))
    return found


def test_the_report_is_one_self_contained_file_of_embedded_pngs(report: Path) -> None:
    import matplotlib.image
    import matplotlib.pyplot as plt

    assert report.name == "report.html" and report.parent.name == "group"
    assert not [p for p in report.parent.iterdir() if p.name.startswith(".")]
    text = report.read_text(encoding="utf-8")
    for banned in ('src="http', "file:", "<script", "<link", "url(", "<iframe"):
        assert banned not in text
    pngs = images(text)
    assert len(pngs) == 6  # evaluation, similarity, curves, saliency, differences, confounds
    for png in pngs:
        assert png.startswith(PNG_SIGNATURE) and len(png) > 1000
        height, width, _ = matplotlib.image.imread(io.BytesIO(png)).shape
        assert height > 50 and width > 50
    assert not plt.get_fignums()


def test_sections_show_the_run_its_flags_and_escape_text(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert "&lt;b&gt;x&amp;y" in text and "<b>x&y" not in text
    assert "did not learn: L" in text and ">shortcut<" in text
    assert ">learned the augmentation: L<" in text
    assert "1 of 2 trained (objective, fold)" in text
    assert "<td>0.35 / 0.05</td>" in text and "<td>-</td>" in text  # critic retrieval
    for setting in ("<td>flip_axes</td><td>all</td>", "<td>max_shift</td><td>9</td>"):
        assert setting in text
    assert "Random trains for zero steps (an untrained control): no curves" in text
    assert "<td>expanded_objectives</td><td>L-CL, Random, S</td>" in text
    assert "0.70 ± 0.05, p = 0.03 *" in text and "0.60 ± 0.10, p = 0.80<" in text
    assert "p: DeLong" in text and "one-sided p-value of a higher hold-out AUC" in text
    assert "0.50 (one fold)<" in text and "group/evaluation_summary.tsv" in text
    # hold-out 01 (AD) and 04 (HC): the null SE sqrt((1 + 1 + 1) / 12) = 0.50
    assert "the same 1 AD and 1 HC subjects in every fold" in text and "is 0.50" in text
    assert (
        "L-CL: T1w dim 2 and falff dim 1 (link 0.42 (null 95 % 0.20, Random 0.18), p = 0.010)"
        in (text)
    )
    assert "no cross-modal pair beats its null: best link 0.18 (null 95 % 0.20), p = 0.400" in text
    assert "group/saliency/objective-L-CL/fold-0_desc-falff_group-all_saliency.nii.gz" in text
    assert "fold-0_desc-T1w_dim-3_stat-rbc_saliency.nii.gz" in text and "stat-q" not in text
    assert "-22.5" in text and "not run" not in text and 'class="problem">' in text
    assert "<td>L-CL</td><td>T1w</td><td>0.81</td><td>0.52</td><td>0.55</td>" in text
    assert "confounds (age site) regressed out" in text


def test_absent_inputs_say_what_did_not_run(tmp_path: Path) -> None:
    group = tmp_path / "group"
    group.mkdir()
    text = write_report(GroupLayout(group)).read_text(encoding="utf-8")
    for analysis in ("similarity", "saliency", "group-differences", "confounds"):
        assert f"not run: use --analysis {analysis}" in text
    assert "not run: the evaluation needs hold-out subjects" in text
    assert "group/pairs.tsv is missing" in text and "group/splits.json is missing" in text
    assert "<img" not in text


def test_analysis_results_of_models_trained_again_since_are_flagged(tmp_path: Path) -> None:
    group = fabricate(tmp_path / "group")
    fresh = write_report(GroupLayout(group)).read_text(encoding="utf-8")
    assert "was trained again" not in fresh
    later = time.time_ns() + 10**9  # L-CL's fold 1 retrained after every analysis ran
    for spec in ("L-CL", "Random"):
        npz = group / f"objective-{spec}" / "fold-1" / "representations.npz"
        npz.write_bytes(b"")
        os.utime(npz, ns=(later, later) if spec == "L-CL" else (0, 0))
    text = write_report(GroupLayout(group)).read_text(encoding="utf-8")
    for output, analysis in (
        ("group/similarity.tsv", "similarity"),
        ("group/saliency/objective-L-CL/crossmodal.json", "saliency"),
        ("group/group-differences/objective-L-CL", "group-differences"),
    ):
        assert (
            f"{output} was written before L-CL was trained again: it shows the earlier "
            f"models; rerun with --eval-only --analysis {analysis}"
        ) in text
    assert "Random was trained again" not in text


def test_a_summary_of_an_older_version_without_p_values_still_renders(tmp_path: Path) -> None:
    from bidsfusion.report.sections import evaluation

    group = tmp_path / "group"
    group.mkdir()
    rows = [["L-CL", "T1w", 2, 0.7, 0.05, True], ["Random", "T1w", 2, 0.55, 0.02, None]]
    write_tsv(group / "evaluation_summary.tsv", SUMMARY_COLUMNS[:-1], rows)
    text = evaluation(GroupLayout(group))
    assert "0.70 ± 0.05 *" in text and "p = " not in text and "p: DeLong" not in text


def test_a_training_summary_without_the_augmentation_column_still_renders(
    tmp_path: Path,
) -> None:
    from bidsfusion.report.training import training

    group = tmp_path / "group"
    group.mkdir()
    rows = [["S", 0, 20, 18, 4.0, None, 0.3, 0.05, 0.3, 0.3, 0.3, False]]
    write_tsv(group / "training_summary.tsv", TRAINING_COLUMNS[:-1], rows)
    text = training(GroupLayout(group))
    assert "all 1 trained (objective, fold) beat their chance levels" in text
    assert 'flag">learned the augmentation' not in text and 'badge good">learned<' in text


def test_malformed_inputs_cost_their_section_a_one_line_message(tmp_path: Path) -> None:
    group = fabricate(tmp_path / "group")
    summary = group / "evaluation_summary.tsv"
    summary.write_text(summary.read_text() + "L-CL\tT1w\n")
    similarity = group / "similarity.tsv"
    similarity.write_text(similarity.read_text().replace("\t0.8\n", "\tabc\n", 1))
    (group / "splits.json").write_text("{not json")
    (
        group / "saliency" / "objective-L-CL" / "fold-0_desc-T1w_group-all_saliency.nii.gz"
    ).write_bytes(b"garbage")
    history = group / "objective-L-CL" / "fold-1" / "history.tsv"
    history.write_text(history.read_text().replace("\t", " ", 3))
    confounds = group / "confounds.tsv"
    confounds.write_text(confounds.read_text().replace("\t0.72\t", "\tn/a?\t", 1))
    text = write_report(GroupLayout(group)).read_text(encoding="utf-8")
    problems = re.findall(r'<p class="problem">([^<]*)</p>', text)
    expected = [
        "group/splits.json: unreadable JSON",
        "group/evaluation_summary.tsv line 8: 2 fields for 7 columns",
        "group/similarity.tsv: column svcca_equal_n: &#x27;abc&#x27; is not a number",
        "group/objective-L-CL/fold-1/history.tsv line 2",
        "group/saliency/objective-L-CL/fold-0_desc-T1w_group-all_saliency.nii.gz: unreadable",
        "group/confounds.tsv: column null: &#x27;n/a?&#x27; is not a number",
    ]
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)
    assert "Traceback" not in text and str(tmp_path) not in "".join(problems)
    assert len(images(text)) == 1  # only the group differences still have a figure


def test_a_figure_that_fails_is_closed_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.pyplot as plt

    from bidsfusion.report import figures

    def broken(ax: object, *_: object) -> None:
        raise RuntimeError("no room for the bars")

    monkeypatch.setattr(figures, "_auc_panel", broken)
    group = fabricate(tmp_path / "group")
    text = write_report(GroupLayout(group)).read_text(encoding="utf-8")
    assert "failed: RuntimeError: no room for the bars" in text
    assert not plt.get_fignums()


def test_the_group_level_writes_the_report_even_when_an_analysis_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from test_group import GROUP_ARGS, write_group_inputs

    from bidsfusion.plugins import get_plugin_manager
    from bidsfusion.tsv import write_tsv as _write

    class Failing:
        @staticmethod
        @hookimpl
        def register_analyses(register):
            def failing(context):
                _write(context.layout.root / "failing.tsv", ["x"], [[1]])
                raise InputDataError("failing needs what this run lacks")

            register("failing", failing)

    bids, out = write_group_inputs(tmp_path)
    get_plugin_manager().register(Failing, name="failing-analysis")
    try:
        caplog.set_level("INFO", logger="bidsfusion.group")
        options = ["--objective", "Random", "--analysis", "failing", "--skip-bids-validation"]
        result = run_main(bids, out, "group", *options, "-w", tmp_path / "work", *GROUP_ARGS)
    finally:
        get_plugin_manager().unregister(name="failing-analysis")
    assert result.code == 65, result.err
    assert "analysis failing failed" in result.err
    report = out / "group" / "report.html"
    assert report.is_file() and "Random" in report.read_text(encoding="utf-8")
    assert (out / "group" / "failing.tsv").is_file()


def browser() -> object:
    """A headless Chromium driven by selenium (skips where either is absent)."""
    if not (CHROMIUM.exists() or shutil.which("chromium")) or not (
        CHROMEDRIVER.exists() or shutil.which("chromedriver")
    ):
        pytest.skip("chromium/chromedriver not installed: apt-get install chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium"))
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    driver = str(CHROMEDRIVER if CHROMEDRIVER.exists() else shutil.which("chromedriver"))
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.mark.slow
def test_a_browser_renders_every_image(report: Path, tmp_path: Path) -> None:
    driver = browser()
    try:
        driver.get(report.resolve().as_uri())
        found = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth])"
        )
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, min(height + 100, 16000))
        assert driver.save_screenshot(str(tmp_path / "report.png"))
    finally:
        driver.quit()
    embedded = len(images(report.read_text(encoding="utf-8")))
    assert len(found) == embedded == 6
    assert all(complete and width > 0 for complete, width in found)
    assert (tmp_path / "report.png").read_bytes().startswith(PNG_SIGNATURE)
