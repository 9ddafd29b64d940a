"""The Conveyor home's modes, as a user other than root gets them: private directories
(0700, nothing for other users to pass through) and a state database written 0644 by
an older Conveyor tightened to 0600 on the next command."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.paths import Paths

ENSURE = (
    "import sys; from pathlib import Path; from conveyor.paths import Paths; "
    "Paths(Path(sys.argv[1])).ensure()"
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_a_non_root_home_is_private_and_an_old_open_state_is_tightened(tmp_path: Path) -> None:
    place = tmp_path / "place"
    place.mkdir()
    home = place / "home"
    home.mkdir()
    for old in (home / "state.db", home / "state.db-last-good"):
        old.write_text("")
        old.chmod(0o644)
    nobody = 65534
    for path in (place, home, *home.iterdir()):
        os.chown(path, nobody, nobody)
    tmp_path.chmod(0o755)

    subprocess.run(
        [
            "setpriv",
            "--reuid",
            str(nobody),
            "--regid",
            str(nobody),
            "--clear-groups",
            sys.executable,
            "-c",
            ENSURE,
            str(home),
        ],
        check=True,
        env={"PATH": os.environ["PATH"], "HOME": str(place)},
    )

    assert mode(home) == 0o700  # not 0711: no app user needs to pass through
    paths = Paths(home)
    for directory in (
        paths.releases,
        paths.data,
        paths.instance_logs,
        paths.supervisor_dir,
        paths.run_dir,
    ):
        assert mode(directory) == 0o700, directory
    assert mode(home / "state.db") == 0o600
    assert mode(home / "state.db-last-good") == 0o600
