"""Log tails lose their escape sequences and control characters, and nothing else."""

from __future__ import annotations

import pytest

from conveyor.printable import printable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[31mred failure\x1b[0m", "red failure"),
        ("\x1b[1;38;5;208mbold orange\x1b[m", "bold orange"),
        ("\x1b]0;a title\x07after", "after"),
        ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("bell\x07 and backspace\x08", "bell and backspace"),
        ("\x1bcreset", "reset"),
        ("carriage\rreturn", "carriagereturn"),
        ("c1 \x9b31m", "c1 31m"),
        ("tab\tstays, ünïcödé — stays", "tab\tstays, ünïcödé — stays"),
        ("truncated \x1b[3", "truncated 3"),
    ],
)
def test_printable(raw: str, shown: str) -> None:
    assert printable(raw) == shown
