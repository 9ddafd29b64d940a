"""Several commands in one SSH session (`conveyor.ssh.batch`): run here with /bin/sh, each
part's exact stdout and exit status come back apart (`conveyor setup`'s probe uses it
on real test hosts in tests/e2e/test_hosts_cli.py)."""

from __future__ import annotations

import subprocess

import pytest

from conveyor.ssh import batch


def run(parts: dict[str, list[str]]) -> dict[str, tuple[int, str]]:
    marker = batch.new_marker()
    done = subprocess.run(
        batch.batch_argv(parts, marker), capture_output=True, text=True, timeout=30
    )
    return batch.parse_batch(done.stdout, marker)


def test_each_part_gets_its_own_exact_stdout_and_status() -> None:
    found = run(
        {
            "home": ["pwd"],
            "text": ["printf", "a\nb\n\n"],
            "no_newline": ["printf", "x rc 3"],
            "empty": ["true"],
            "failing": ["sh", "-c", "echo partial; echo oops >&2; exit 3"],
            "missing": ["no-such-command-here"],
            "quoted": ["echo", "it's $HOME; `x`"],
        }
    )
    assert found["home"][0] == 0 and found["home"][1].startswith("/")
    assert found["text"] == (0, "a\nb\n\n")
    assert found["no_newline"] == (0, "x rc 3")
    assert found["empty"] == (0, "")
    assert found["failing"] == (3, "partial\n")  # stderr dropped
    assert found["missing"][0] == 127
    assert found["quoted"] == (0, "it's $HOME; `x`\n")


def test_a_part_cut_short_is_absent() -> None:
    marker = batch.new_marker()
    output = f"\n{marker} home\n/home/u\n{marker} rc 0\n\n{marker} conf\n[unix_http"
    assert batch.parse_batch(output, marker) == {"home": (0, "/home/u")}


def test_part_names_are_words() -> None:
    with pytest.raises(ValueError, match="letters, digits and _ only"):
        batch.batch_argv({"a b": ["true"]}, "m")
