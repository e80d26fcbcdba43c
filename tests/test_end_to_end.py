"""The whole App on ``bidsfusion synth --subjects 40``: participant, then group (opt-in).

About 11 minutes on 2 cores, so it runs only with ``BIDSFUSION_E2E=1``:

    BIDSFUSION_E2E=1 python -m pytest -q tests/test_end_to_end.py
"""

from __future__ import annotations

import os

import pytest
from group_outputs import check_evaluation, check_group_outputs, read_pairs
from runner import run_main

from bidsfusion.synth.dataset import make_dataset

pytestmark = pytest.mark.skipif(
    os.environ.get("BIDSFUSION_E2E") != "1", reason="set BIDSFUSION_E2E=1 (about 11 minutes)"
)
SPECS = ("L-CL", "S-AE", "Random")


def test_synth_participant_group(tmp_path) -> None:
    bids, out, work = tmp_path / "bids", tmp_path / "out", tmp_path / "work"
    summary = make_dataset(bids, n_subjects=40, seed=1)
    participant = run_main(bids, out, "participant", "-w", work)
    assert participant.code == 0, participant.err
    assert "processed 40" in participant.err
    group = run_main(
        bids, out, "group", *[a for spec in SPECS for a in ("--objective", spec)],
        "--input-size", "32", "--epochs", "3", "--n-trials", "50", "-w", work,
    )  # fmt: skip
    assert group.code == 0, group.err
    check_group_outputs(out, SPECS, epochs=3, latent_dim=64)
    check_evaluation(out, SPECS, n_folds=5)
    rows = read_pairs(out)
    assert len({r["subject"] for r in rows}) == 40
    assert len(rows) >= max(summary.n_t1w, summary.n_bold)  # every scan is in a pair
