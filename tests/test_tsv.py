"""Reading tables as users edit them (bidsfusion.tsv)."""

from __future__ import annotations

import pytest

from bidsfusion.errors import InputDataError
from bidsfusion.tsv import read_tsv

PLAIN = "participant_id\tdiagnosis\nsub-01\tAD\nsub-02\tHC\n"


@pytest.mark.parametrize(
    "text",
    [
        "\ufeff" + PLAIN,  # saved by a spreadsheet with a byte-order mark
        PLAIN.replace("\n", "\r\n"),  # CRLF line ends
        PLAIN + "\n\n",  # blank lines at the end
        PLAIN.replace("sub-02", "\nsub-02"),  # a blank line between rows
    ],
)
def test_edited_tables_read_like_the_plain_one(tmp_path, text) -> None:
    plain, edited = tmp_path / "plain.tsv", tmp_path / "edited.tsv"
    plain.write_text(PLAIN, encoding="utf-8")
    edited.write_bytes(text.encode("utf-8"))
    assert read_tsv(edited) == read_tsv(plain)
    assert read_tsv(edited)[0] == ["participant_id", "diagnosis"]


def test_a_short_row_names_its_line(tmp_path) -> None:
    path = tmp_path / "participants.tsv"
    path.write_text(PLAIN + "sub-03\n", encoding="utf-8")
    with pytest.raises(InputDataError, match=r"participants.tsv line 4: 1 fields for 2 columns"):
        read_tsv(path)
