"""The bounds of conveyor.yml: input that used to be accepted, crash or exhaust the machine
gets a key-path error instead (issue 13, section 6)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from conveyor.config import load_config
from conveyor.config.loader import parse_config
from conveyor.errors import ConfigError

BASE = """\
project: demo
services:
  app:
    run: [python3, app.py]
environments:
  dev:
    listen: 127.0.0.1:18112
"""


def issues_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ={})
    return caught.value.issues


def with_service(snippet: str) -> str:
    """BASE with `snippet` (YAML lines) added to service app."""
    return BASE.replace("    run:", textwrap.indent(snippet, "    ") + "\n    run:", 1)


def with_environment(snippet: str) -> str:
    """BASE with `snippet` (YAML lines) added to environment dev."""
    return BASE + textwrap.indent(snippet, "    ") + "\n"


# --- values accepted before although wrong ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            BASE.replace("  app:", "  " + "a" * 300 + ":"),
            "services/" + "a" * 300 + ": service name too long (300 characters): at most 63 "
            "(it becomes part of paths, process and host names)",
            id="300-character service name",
        ),
        pytest.param(
            BASE.replace("  dev:", "  " + "d" * 64 + ":"),
            "environments/" + "d" * 64 + ": environment name too long (64 characters): at "
            "most 63 (it becomes part of paths, process and host names)",
            id="64-character environment name",
        ),
        pytest.param(
            BASE.replace("project: demo", "project: " + "p" * 64),
            "project: project name too long (64 characters): at most 63",
            id="64-character project name",
        ),
        pytest.param(
            with_service("replicas: 1000000"),
            "services/app/replicas: expected an integer between 1 and 1000, got 1000000",
            id="replicas 1000000",
        ),
        pytest.param(
            with_environment("services: {app: {replicas: 1001}}"),
            "environments/dev/services/app/replicas: expected an integer between 1 and 1000, "
            "got 1001",
            id="override replicas 1001",
        ),
        pytest.param(
            with_service("stop_timeout: 99999999999999999999h"),
            'services/app/stop_timeout: expected a duration of at most 7 days ("168h"), '
            'got "99999999999999999999h"',
            id="stop_timeout 99999999999999999999h",
        ),
        pytest.param(
            with_service("drain_timeout: " + "9" * 400 + "s"),
            'services/app/drain_timeout: expected a duration of at most 7 days ("168h"), '
            'got "' + "9" * 57 + '..."',
            id="duration beyond a float",
        ),
        pytest.param(
            with_service("stop_timeout: \u0665s"),
            'services/app/stop_timeout: expected a duration like "5s", got "\u0665s" '
            "(write its digits as 0-9)",
            id="Arabic-Indic digits in a duration",
        ),
        pytest.param(
            with_service("replicas: '\u0665'"),
            'services/app/replicas: expected an integer, got "\u0665"',
            id="Arabic-Indic digits in a number",
        ),
        pytest.param(
            with_service("replicas: '" + "9" * 5000 + "'"),
            'services/app/replicas: expected an integer between 1 and 1000, got "'
            + "9" * 57
            + '..."',
            id="replicas of 5000 digits as text",
        ),
        pytest.param(
            with_environment("strategy: {max_surge: '" + "9" * 5000 + "%'}"),
            'environments/dev/strategy/max_surge: expected a percentage of at most 100%, got "'
            + "9" * 57
            + '..."',
            id="percentage of 5000 digits",
        ),
        pytest.param(
            with_environment("approvals: {required: 1000000000}"),
            "environments/dev/approvals/required: expected an integer between 1 and 100, "
            "got 1000000000",
            id="approvals.required 1000000000",
        ),
        pytest.param(
            with_environment("approvals: {required: 3, approvers: [ann, bob]}"),
            "environments/dev/approvals/required: 3 approvals required, but the approvers are "
            "2 people, so no deploy could ever be approved",
            id="more approvals than approvers",
        ),
        pytest.param(
            with_environment("promote_from: prod")
            + "  prod: {listen: '127.0.0.1:18113', promote_from: qa}\n"
            + "  qa: {listen: '127.0.0.1:18114', promote_from: dev}\n",
            "environments/dev/promote_from: the promotions go round in a circle "
            "(dev <- prod <- qa <- dev), so no release could ever reach them: one environment "
            "must take releases without promote_from",
            id="promote_from cycle",
        ),
        pytest.param(
            with_service("health: {type: tcp, interval: 0s}"),
            'services/app/health/interval: expected at least 100ms between two checks, got "0s"',
            id="health interval 0s",
        ),
        pytest.param(
            with_service("health: {type: http, timeout: 0s}"),
            'services/app/health/timeout: expected a timeout above 0s (like "2s"): every check '
            "would fail",
            id="health timeout 0s",
        ),
        pytest.param(
            with_environment("strategy: {type: canary, steps: [{set_weight: 0}]}"),
            "environments/dev/strategy/steps/0/set_weight: expected an integer between 1 and "
            "100, got 0",
            id="set_weight 0",
        ),
        pytest.param(
            with_environment("strategy: {type: canary, steps: []}"),
            "environments/dev/strategy/steps: expected at least one step (like set_weight: 10), "
            "or leave steps out for the default 10% - pause 1m - 50% - pause 1m",
            id="empty steps",
        ),
        pytest.param(
            with_service("route: {}"),
            'services/app/route: an empty route: give a path (like "/api") or a host, or leave '
            'route out to receive every request (path "/")',
            id="route {}",
        ),
        pytest.param(
            BASE.replace("run: [python3, app.py]", "run: ['']"),
            "services/app/run/0: expected the program to run, got an empty string",
            id="run ['']",
        ),
        pytest.param(
            with_service("build: [[' ', x]]"),
            "services/app/build/0/0: expected the program to run, got an empty string",
            id="build argv of a blank program",
        ),
        pytest.param(
            with_service("source: ../../etc"),
            "services/app/source: expected a directory inside the project (the directory of "
            'conveyor.yml), got "../../etc"',
            id="source outside the project",
        ),
        pytest.param(
            with_service("source: api/../../etc"),
            "services/app/source: expected a directory inside the project (the directory of "
            'conveyor.yml), got "api/../../etc"',
            id="source outside the project after a detour",
        ),
        pytest.param(
            with_environment("strategy: {type: rolling, max_surge: 200%}"),
            'environments/dev/strategy/max_surge: expected a percentage of at most 100%, got "200%"',
            id="max_surge 200%",
        ),
        pytest.param(
            with_environment("strategy: {type: rolling, max_unavailable: 5000}"),
            "environments/dev/strategy/max_unavailable: expected an integer between 0 and 1000 "
            'or a percentage like "25%", got 5000',
            id="max_unavailable 5000",
        ),
        pytest.param(
            with_environment(
                "ports: '\u0662\u0660\u0660\u0660\u0660-\u0662\u0669\u0669\u0669\u0669'"
            ),
            'environments/dev/ports: expected a port range "LOW-HIGH" like "20000-29999", got '
            '"\u0662\u0660\u0660\u0660\u0660-\u0662\u0669\u0669\u0669\u0669"',
            id="Arabic-Indic digits in a port range",
        ),
    ],
)
def test_value_out_of_bounds_names_its_key(text: str, expected: str) -> None:
    assert issues_of(text) == [expected]


@pytest.mark.parametrize(
    "snippet",
    [
        "replicas: 1000",
        "stop_timeout: 168h",
        "source: api/../web",
        "health: {type: tcp, interval: 100ms}",
    ],
)
def test_values_at_the_bounds_are_accepted(snippet: str) -> None:
    parse_config(with_service(snippet), environ={})


def test_names_of_63_characters_are_accepted() -> None:
    text = BASE.replace("  app:", "  " + "a" * 63 + ":").replace("  dev:", "  " + "d" * 63 + ":")
    config = parse_config(text.replace("project: demo", "project: " + "p" * 63), environ={})
    assert list(config.services) == ["a" * 63]


def test_a_name_with_a_trailing_newline_is_refused() -> None:
    assert issues_of(BASE.replace("  app:", '  "app\\n":')) == [
        'services/app\n: invalid service name "app\\n": use lowercase letters, digits and "-", '
        "starting with a letter"
    ]


def test_approvals_from_groups_count_their_members() -> None:
    text = with_environment("approvals: {required: 2, approvers: ['@sre', bob]}")
    parse_config(text + "groups: {sre: [ann, bob]}\n", environ={})
    assert issues_of(text + "groups: {sre: [bob]}\n") == [
        "environments/dev/approvals/required: 2 approvals required, but the approvers are "
        "1 person, so no deploy could ever be approved"
    ]


# --- YAML that is cheap to write and expensive to read --------------------------------------

ALIAS_BOMB = """\
  app:
    run: [python3, app.py]
    exclude: &l9 [*l8, *l8, *l8, *l8, *l8, *l8, *l8, *l8, *l8]
"""


def alias_bomb() -> str:
    """A billion laughs under a real key: 9 ** 9 strings from 10 lines."""
    anchors = "x-l0: &l0 lol\n" + "".join(
        f"x-l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]\n" for n in range(1, 9)
    )
    return anchors + BASE.replace("  app:\n    run: [python3, app.py]\n", ALIAS_BOMB)


def test_alias_bomb_is_refused_quickly() -> None:
    started = time.monotonic()
    assert issues_of(alias_bomb()) == [
        "services/app/exclude: YAML aliases (*name) expand this to more than 20000 values "
        "(an alias bomb?); write the values out or use fewer aliases"
    ]
    assert time.monotonic() - started < 5  # it took 31 s and 2 GB before


def test_too_many_values_without_aliases_are_refused() -> None:
    text = with_service("exclude: [" + ", ".join(["a"] * 20_001) + "]")
    assert issues_of(text) == [
        "services/app/exclude: more than 20000 values; a conveyor.yml holds hundreds"
    ]


def test_aliases_of_a_long_text_are_refused() -> None:
    # Each use would be interpolated into a copy of its own: 50 x 100 kB here.
    text = f"x-text: &text '${{A:-a}}{'x' * 100_000}'\n" + with_service(
        "exclude: [" + ", ".join(["*text"] * 50) + "]"
    )
    assert issues_of(text) == [
        "services/app/exclude: YAML aliases (*name) expand this to more than 4 MiB of text; "
        "write the values out or use fewer aliases"
    ]


def test_alias_to_itself_is_refused() -> None:
    assert issues_of(with_service("exclude: &me [a, *me]")) == [
        "services/app/exclude/1: a YAML alias refers to a value that contains it"
    ]


def test_ordinary_aliases_are_fine() -> None:
    config = parse_config("x-env: &env {A: '1', B: '2'}\n" + with_service("env: *env"), environ={})
    assert config.services["app"].env == {"A": "1", "B": "2"}


def test_deep_nesting_is_refused() -> None:
    nested = "[" * 40 + "]" * 40
    where = "/".join(["services", "app", "env", "A"] + ["0"] * 28)  # 32 keys
    assert issues_of(with_service(f"env: {{A: {nested}}}")) == [
        f"{where}: nested more than 32 levels deep"
    ]


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            "replicas: 1" + "0" * 5000,
            'line 4, column 15: cannot read "1000000000000000000000000000000000000000000000000'
            '00000000...": Exceeds the limit (4300 digits) for integer string conversion: value '
            "has 5001 digits",
        ),
        (
            "env: {A: 2024-02-30}",
            'line 4, column 14: cannot read "2024-02-30": day is out of range for month',
        ),
        (
            "env: {A: 0x" + "f" * 5000 + "}",
            'line 4, column 14: "0x' + "f" * 55 + '..." is too large a number (at most '
            "9223372036854775807)",
        ),
        (
            "replicas: 9223372036854775808",
            'line 4, column 15: "9223372036854775808" is too large a number (at most '
            "9223372036854775807)",
        ),
    ],
    ids=["integer of 5000 digits", "February 30th", "hex integer of 5000 digits", "2**63"],
)
def test_scalars_yaml_cannot_build_name_their_line(snippet: str, expected: str) -> None:
    assert issues_of(with_service(snippet)) == [expected]


# --- what is read at all ------------------------------------------------------------------


def load_issues(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    return caught.value.issues


def test_a_character_device_is_not_read() -> None:
    assert load_issues(Path("/dev/zero")) == [
        "a character device, not a regular file: Conveyor reads its config from a file"
    ]


def test_a_fifo_is_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "conveyor.yml"
    os.mkfifo(fifo)
    found: list[list[str]] = []
    reader = threading.Thread(target=lambda: found.append(load_issues(fifo)), daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # blocked on the FIFO: a writer that closes at once frees it
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join()
        pytest.fail("load_config waited on a FIFO for a writer")
    assert found == [
        ["a FIFO (named pipe), not a regular file: Conveyor reads its config from a file"]
    ]


def test_a_huge_file_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "conveyor.yml"
    path.write_text(BASE + "# " + "x" * (1024 * 1024) + "\n")
    assert load_issues(path) == [
        "larger than 1024 KiB: a conveyor.yml is a few KiB (is this the right file?)"
    ]


def test_a_file_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "conveyor.yml"
    padding = 1024 * 1024 - len(BASE) - 3
    path.write_text(BASE + "# " + "x" * padding + "\n")
    assert path.stat().st_size == 1024 * 1024
    assert load_config(path, environ={}).config.project == "demo"


# --- the same through the CLI: exit 2, a message, no traceback, no hang -------------------


def conveyor(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "CONVEYOR_HOME": str(cwd / "h"), **_pythonpath()},
        timeout=30,  # a FIFO used to block for ever
    )


def _pythonpath() -> dict[str, str]:
    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}


def _fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "fifo.yml")
    return tmp_path / "fifo.yml"


def _huge(tmp_path: Path) -> Path:
    path = tmp_path / "huge.yml"
    with path.open("w") as file:
        file.write(BASE)
        file.write(("# " + "x" * 1022 + "\n") * 2048)
    return path


def _bomb(tmp_path: Path) -> Path:
    path = tmp_path / "bomb.yml"
    path.write_text(alias_bomb())
    return path


@pytest.mark.parametrize(
    ("make", "command", "expected"),
    [
        (
            lambda _: Path("/dev/zero"),
            "validate",
            "a character device, not a regular file: Conveyor reads its config from a file",
        ),
        (_fifo, "validate", "a FIFO (named pipe), not a regular file"),
        (_fifo, "status", "a FIFO (named pipe), not a regular file"),
        (_huge, "validate", "larger than 1024 KiB: a conveyor.yml is a few KiB"),
        (_bomb, "deploy", "services/app/exclude: YAML aliases (*name) expand this to more than"),
    ],
    ids=["/dev/zero", "FIFO", "FIFO status", "huge file", "alias bomb"],
)
def test_cli_refuses_unreadable_config(tmp_path: Path, make, command: str, expected: str) -> None:
    config = make(tmp_path)
    args = ("--config", str(config), command, *(["dev"] if command == "deploy" else []))
    result = conveyor(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    assert f"error: {config}: 1 problem" in result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
