"""Pairing scans across modalities by closeness in days, and the pairs TSV."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from bidsfusion.data.pairs import (
    ROLE_EVALUATION,
    ROLE_PRETRAIN,
    Scan,
    build_pairs,
    read_pairs_tsv,
    write_pairs_tsv,
)
from bidsfusion.errors import InputDataError, InputMissingError


def scan(subject: str, session: str | None, modality: str, days: float = 0.0) -> Scan:
    return Scan(subject, session, modality, Path(f"{subject}_{session}_{modality}.nii.gz"), days)


def sessions_of(pairs) -> list[tuple[str | None, str | None]]:
    return [(p.sessions["T1w"], p.sessions["falff"]) for p in pairs]


def test_every_scan_pairs_with_the_closest_and_duplicates_collapse():
    scans = [
        scan("01", "a", "T1w", 0),
        scan("01", "b", "T1w", 400),
        scan("01", "a", "falff", 10),
        scan("01", "c", "falff", 390),
        scan("01", "d", "falff", 800),
    ]
    pairs = build_pairs(scans)
    assert sessions_of(pairs) == [("a", "a"), ("b", "c"), ("b", "d")]
    assert [p.days_apart for p in pairs] == [10, 10, 400]
    assert pairs[2].paths == {"T1w": scans[1].path, "falff": scans[4].path}


def test_evaluation_flags_one_closest_pair_per_subject_ties_to_earliest():
    pairs = build_pairs(
        [
            scan("01", "a", "T1w", 0),
            scan("01", "b", "T1w", 400),
            scan("01", "a", "falff", 10),
            scan("01", "c", "falff", 390),
            scan("02", "x", "T1w", 5),
            scan("02", "y", "falff", 6),
            scan("02", "z", "falff", 50),
        ]
    )
    flagged = [(p.subject, p.sessions["T1w"], p.sessions["falff"]) for p in pairs if p.evaluation]
    assert flagged == [("01", "a", "a"), ("02", "x", "y")]


def test_distance_ties_go_to_the_earlier_scan():
    # T1w@100 is 50 days from both fALFF scans: the earlier (session "z") wins,
    # although its label sorts later; fALFF@150 pairs with T1w@160 instead.
    pairs = build_pairs(
        [
            scan("01", "t1", "T1w", 100),
            scan("01", "t2", "T1w", 160),
            scan("01", "a", "falff", 150),
            scan("01", "z", "falff", 50),
        ]
    )
    assert sessions_of(pairs) == [("t1", "z"), ("t2", "a")]


def test_unknown_days_pair_within_the_session():
    scans = [scan("01", s, m) for s in ("1", "2") for m in ("T1w", "falff")]
    pairs = build_pairs(scans)
    assert sessions_of(pairs) == [("1", "1"), ("2", "2")]
    assert [p.evaluation for p in pairs] == [True, False]


def test_subject_without_a_modality_has_no_pair_and_other_modalities_are_ignored():
    pairs = build_pairs(
        [
            scan("01", None, "T1w"),
            scan("02", None, "T1w"),
            scan("02", None, "falff"),
            scan("02", None, "bold"),
        ]
    )
    assert [p.subject for p in pairs] == ["02"]
    assert pairs[0].sessions == {"T1w": None, "falff": None}


def test_result_does_not_depend_on_input_order():
    scans = [
        scan(f"{s:02d}", f"{k}", m, days=(7 * k + s) % 13)
        for s in range(4)
        for k in range(3)
        for m in ("T1w", "falff")
    ]
    expected = build_pairs(scans)
    shuffled = scans[:]
    random.Random(1).shuffle(shuffled)
    assert build_pairs(shuffled) == expected


def test_three_modalities_pair_around_the_anchor():
    scans = [
        scan("01", "a", "T1w", 0),
        scan("01", "b", "T1w", 100),
        scan("01", "a", "falff", 0),
        scan("01", "c", "alff", 90),
    ]
    pairs = build_pairs(scans, modalities=("T1w", "falff", "alff"))
    got = [(p.sessions["T1w"], p.sessions["falff"], p.sessions["alff"]) for p in pairs]
    # falff@0 -> anchor T1w@0 -> its closest alff@90; alff@90 -> anchor T1w@100.
    assert got == [("a", "a", "c"), ("b", "a", "c")]
    assert [p.days_apart for p in pairs] == [90, 100]


def test_tsv_round_trip(tmp_path):
    pairs = build_pairs(
        [
            scan("01", "a", "T1w", 0),
            scan("01", "a", "falff", 3),
            scan("01", "b", "falff", 30),
            scan("02", None, "T1w"),
            scan("02", None, "falff"),
        ]
    )
    path = tmp_path / "group" / "pairs.tsv"
    write_pairs_tsv(pairs, {"01": "AD"}, path)
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == [
        "subject",
        "session_T1w",
        "session_falff",
        "path_T1w",
        "path_falff",
        "days_apart",
        "group",
        "role",
    ]
    assert [line.split("\t")[-1] for line in lines[1:]] == [
        ROLE_EVALUATION,
        ROLE_PRETRAIN,
        ROLE_EVALUATION,
    ]
    read, groups = read_pairs_tsv(path)
    assert read == pairs
    assert groups == {"01": "AD", "02": "other"}
    assert sorted(p.name for p in path.parent.iterdir()) == ["pairs.tsv"]


def test_reading_a_missing_or_malformed_file_fails_naming_it(tmp_path):
    with pytest.raises(InputMissingError, match=re.escape("nope.tsv")):
        read_pairs_tsv(tmp_path / "nope.tsv")
    bad = tmp_path / "bad.tsv"
    bad.write_text("subject\tpath_T1w\n01\tx\n")
    with pytest.raises(InputDataError, match=re.escape("bad.tsv")) as error:
        read_pairs_tsv(bad)
    assert error.value.exit_code == 65
