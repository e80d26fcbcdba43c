"""Reading NIfTI inputs (bidsfusion.nifti): each failure one line naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from bidsfusion.errors import InputMissingError
from bidsfusion.nifti import load_image


def test_a_broken_link_says_so_and_how_to_fetch_it(tmp_path: Path) -> None:
    link = tmp_path / "sub-01_T1w.nii.gz"
    link.symlink_to(tmp_path / ".git" / "annex" / "objects" / "SHA256E-s1.nii.gz")
    with pytest.raises(InputMissingError) as error:
        load_image(link)
    message = str(error.value)
    assert message.startswith(f"{link}: a broken link to {tmp_path}/.git/annex/objects/")
    assert "datalad get" in message and "\n" not in message and error.value.exit_code == 66


def test_a_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(InputMissingError, match=r"absent.nii.gz: file not found$"):
        load_image(tmp_path / "absent.nii.gz")
