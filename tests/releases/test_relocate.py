"""Scripts of a release's virtualenv run after the release moved (as on a host)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.releases.relocate import relocatable_scripts


def _venv_with_script(release: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(release / ".venv")], check=True
    )
    script = release / ".venv" / "bin" / "hello"
    # What pip writes for a console script: the venv's python, absolute.
    script.write_text(
        f"#!{release}/.venv/bin/python\n"
        "import sys\n"
        "print('prefix', sys.prefix)\n"
        "print('args', sys.argv[1:])\n"
    )
    script.chmod(0o755)
    return script


def test_a_venv_script_runs_after_the_release_moved(tmp_path: Path) -> None:
    release = tmp_path / "releases" / "r1"
    _venv_with_script(release)
    assert relocatable_scripts(release) == [".venv/bin/hello"]
    moved = tmp_path / "elsewhere" / "r1"
    moved.parent.mkdir()
    release.rename(moved)
    for how in ([str(moved / ".venv/bin/hello")], [".venv/bin/hello"]):
        done = subprocess.run(
            [*how, "a b", "$HOME"], cwd=moved, capture_output=True, text=True, check=True
        )
        lines = done.stdout.splitlines()
        # It ran with the moved venv's python, with its arguments as given.
        assert lines == [f"prefix {moved / '.venv'}", "args ['a b', '$HOME']"]


def test_a_hard_linked_script_is_replaced_not_written_through(tmp_path: Path) -> None:
    release = tmp_path / "r2"
    script = _venv_with_script(release)
    earlier = tmp_path / "earlier-hello"
    os.link(script, earlier)
    before = earlier.read_text()
    assert relocatable_scripts(release) == [".venv/bin/hello"]
    assert earlier.read_text() == before  # the earlier release's file is untouched
    assert script.read_text().startswith("#!/bin/sh\n")
    assert os.stat(script).st_mode & 0o777 == 0o755


def test_scripts_naming_other_interpreters_are_left_alone(tmp_path: Path) -> None:
    release = tmp_path / "r3"
    (release / "bin").mkdir(parents=True)
    (release / "bin" / "tool").write_text("#!/usr/bin/env python3\nprint(1)\n")
    (release / "bin" / "flagged").write_text(f"#!{release}/bin/python -E\nprint(1)\n")
    (release / "lib").mkdir()
    (release / "lib" / "x").write_text(f"#!{release}/bin/python\n")
    assert relocatable_scripts(release) == []


@pytest.mark.parametrize("quote", ['"', ""], ids=["quoted", "bare"])
def test_pips_own_trampoline_for_long_paths_is_relocated_too(tmp_path: Path, quote: str) -> None:
    release = tmp_path / ("long-" * 30) / "r4"
    script = _venv_with_script(release)
    body = script.read_text().split("\n", 1)[1]
    # What pip writes when the interpreter's path is too long for a `#!` line (pip
    # versions differ on quoting the path).
    python = f"{quote}{release}/.venv/bin/python{quote}"
    script.write_text(f"#!/bin/sh\n'''exec' {python} \"$0\" \"$@\"\n' '''\n{body}")
    assert relocatable_scripts(release) == [".venv/bin/hello"]
    moved = tmp_path / "r4"
    release.rename(moved)
    done = subprocess.run(
        [str(moved / ".venv/bin/hello"), "x"], capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines() == [f"prefix {moved / '.venv'}", "args ['x']"]
