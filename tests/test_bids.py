"""BIDS naming and metadata: entities in BIDS order, sidecar inheritance, table wording."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bidsfusion.bids import (
    check_dataset,
    derivative_name,
    participants_table,
    scan_metadata,
    source_entities,
)
from bidsfusion.errors import BidsValidationError, InputDataError, InputMissingError


def test_derivative_names_keep_every_source_entity_in_bids_order():
    source = "sub-01_ses-2_task-rest_acq-fast_ce-gad_rec-mag_dir-AP_run-03_echo-1_part-mag_bold"
    entities = source_entities(f"/data/{source}.nii.gz")
    assert entities["run"] == "03"  # labels as written
    shuffled = dict(reversed(list({**entities, "space": "MNI", "stat": "falff"}.items())))
    assert derivative_name(shuffled, "boldmap", ".nii.gz") == (
        "sub-01_ses-2_task-rest_acq-fast_ce-gad_rec-mag_dir-AP_run-03_echo-1_part-mag"
        "_space-MNI_stat-falff_boldmap.nii.gz"
    )


def test_sidecars_are_inherited_deeper_and_more_specific_winning(tmp_path):
    bold = tmp_path / "sub-01" / "ses-1" / "func" / "sub-01_ses-1_task-rest_run-1_bold.nii.gz"
    bold.parent.mkdir(parents=True)
    (tmp_path / "task-rest_bold.json").write_text('{"RepetitionTime": 3, "TaskName": "rest"}')
    (tmp_path / "sub-01" / "sub-01_task-rest_bold.json").write_text('{"RepetitionTime": 2.5}')
    (bold.parent / "sub-01_ses-1_task-rest_run-1_bold.json").write_text('{"EchoTime": 0.03}')
    (bold.parent / "sub-01_ses-1_task-other_bold.json").write_text('{"RepetitionTime": 9}')
    (bold.parent / "sub-01_ses-1_task-rest_run-1_T1w.json").write_text('{"RepetitionTime": 8}')
    assert scan_metadata(bold, tmp_path) == {
        "RepetitionTime": 2.5,
        "TaskName": "rest",
        "EchoTime": 0.03,
    }


def test_an_invalid_sidecar_is_an_error_naming_it(tmp_path):
    bold = tmp_path / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz"
    bold.parent.mkdir(parents=True)
    sidecar = bold.parent / "sub-01_task-rest_bold.json"
    sidecar.write_text('{"RepetitionTime": 2,')
    with pytest.raises(InputDataError, match="invalid JSON sidecar") as error:
        scan_metadata(bold, tmp_path)
    assert str(sidecar) in str(error.value) and error.value.exit_code == 65


def test_dataset_description_that_is_a_folder_is_not_called_missing(tmp_path):
    (tmp_path / "dataset_description.json").mkdir()
    with pytest.raises(BidsValidationError, match="is not a file") as error:
        check_dataset(tmp_path)
    assert "missing" not in str(error.value)


@pytest.mark.parametrize(
    ("content", "error", "words"),
    [
        (None, InputMissingError, "is missing"),
        ("", InputDataError, "is empty"),
        ("diagnosis\nAD\n", InputDataError, "no participant_id column"),
        ("participant_id\tdiagnosis\n", InputDataError, "lists no participants"),
        (
            "participant_id\tdiagnosis\nsub-01\tHC\nsub-02\tAD\n01\tAD\n",
            InputDataError,
            "lists sub-01 on lines 2, 4; keep one row per participant",
        ),
    ],
)
def test_participants_table_says_what_is_wrong(tmp_path, content, error, words):
    if content is not None:
        (tmp_path / "participants.tsv").write_text(content)
    with pytest.raises(error, match=words):
        participants_table(tmp_path)


def test_participants_table_by_label(tmp_path: Path):
    (tmp_path / "participants.tsv").write_text("participant_id\tdiagnosis\nsub-01\tAD\n02\tHC\n")
    assert participants_table(tmp_path) == {
        "01": {"participant_id": "sub-01", "diagnosis": "AD"},
        "02": {"participant_id": "02", "diagnosis": "HC"},
    }
    assert json.dumps(participants_table(tmp_path))
