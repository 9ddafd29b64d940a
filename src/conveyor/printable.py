"""Make output captured from an app or a build safe to show: no escape sequences.

Log tails quoted in errors (the last lines of an instance that failed its
health check, of a failed build or pipeline job, of supervisord) are shown
in a terminal, stored with the deployment and printed in `--json`. Colour
codes there are noise in a file and in JSON, and other escape sequences
(a window title, cursor moves, a bell) would act on the reader's terminal.
They are removed, and so is every other control character but the tab.
"""

from __future__ import annotations

import re

# CSI (colours, cursor moves) and OSC (titles, hyperlinks) sequences, then any other
# two-character escape, then the remaining C0 and C1 control characters but the tab.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[ -~]?"
    r"|[\x00-\x08\x0a-\x1f\x7f-\x9f]"
)


def printable(text: str) -> str:
    """`text` without escape sequences and control characters (tabs stay).

    >>> printable("\\x1b[31mred\\x1b[0m and \\x1b]0;title\\x07plain\\x07")
    'red and plain'
    """
    return _ESCAPES.sub("", text)
