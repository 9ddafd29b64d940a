"""End to end: `conveyor run` in the current release of a deployed shop."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_shop import build
from tests.support.project import CONVEYOR, Project, make_project

pytestmark = pytest.mark.slow

TOKEN = "tok-9f3b2c7e1d"  # the api's secret in staging: never in the history


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, str]]:
    """The shop deployed to staging, its api with a secret; and the api's release dir."""
    shop = make_project(tmp_path_factory.mktemp("run"))
    try:
        # A program in the release's .venv/bin, as a virtualenv built into it would have.
        venv_program = "printf '#!/bin/sh\\necho from the venv\\n' > .venv/bin/shop-hello"
        shop.configure_service(
            "api",
            env={"SHOP_API_TOKEN": TOKEN, "SHOP_GREETING": "hi"},
            build=[
                "python3 -m compileall -q .",
                f"mkdir -p .venv/bin && {venv_program} && chmod +x .venv/bin/shop-hello",
            ],
        )
        release = build(shop)["api"]
        shop.run("deploy", "staging")
        path = next(r["path"] for r in shop.json("releases", "api") if r["id"] == release)
        yield shop, str(Path(path).resolve())
    finally:
        shop.shutdown()


def py(code: str) -> list[str]:
    return ["python3", "-c", code]


def test_runs_in_the_release_with_the_service_env(deployed: tuple[Project, str]) -> None:
    shop, release_dir = deployed
    code = (
        "import os; print(os.getcwd()); "
        "print(*(os.environ[k] for k in ('SHOP_GREETING', 'SHOP_BANNER', 'CONVEYOR_RELEASE')))"
    )
    out = shop.run("run", "staging", "api", "--", *py(code)).stdout.splitlines()
    assert out[0] == release_dir
    assert out[1].split()[:2] == ["hi", "staging"]
    assert out[1].split()[2] in release_dir
    # The release's .venv/bin comes first on PATH, as in an activated virtualenv.
    assert shop.run("run", "staging", "api", "--", "shop-hello").stdout == "from the venv\n"


def test_exit_code_is_passed_through(deployed: tuple[Project, str]) -> None:
    shop, _ = deployed
    assert shop.run("run", "staging", "api", "--", "true").returncode == 0
    failed = shop.run("run", "staging", "api", "--", *py("raise SystemExit(3)"), check=False)
    assert failed.returncode == 3, failed.stderr
    assert "error" not in failed.stderr
    # Without `--`, everything after SERVICE is the command too, options included.
    no_dashes = shop.run("run", "staging", "api", "python3", "-c", "exit(4)", check=False)
    assert no_dashes.returncode == 4


def test_plain_passthrough_without_a_terminal(deployed: tuple[Project, str]) -> None:
    shop, _ = deployed
    code = "import sys; print(sys.stdin.isatty(), input().upper()); print('to stderr', file=sys.stderr)"
    result = subprocess.run(
        [*CONVEYOR, "run", "staging", "api", "--", *py(code)],
        cwd=shop.root,
        env=shop.env,
        input="piped line\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "False PIPED LINE\n" and result.stderr == "to stderr\n"


def test_secrets_stay_out_of_the_history_and_the_store(deployed: tuple[Project, str]) -> None:
    shop, _ = deployed
    check = f'test "$SHOP_API_TOKEN" = {TOKEN}'
    shop.run("run", "staging", "api", "--", "sh", "-c", check)  # the command sees it
    shop.run("run", "staging", "api", "--", "echo", "--password", "hunter22", "ok")
    human = shop.run("history", "staging").stdout
    assert 'run  api  "sh -c \'test "$SHOP_API_TOKEN" = ***\'"  exit 0' in human, human
    assert "echo --password '***' ok" in human, human
    listed = shop.run("history", "staging", "--json").stdout
    assert TOKEN not in human and TOKEN not in listed and "hunter22" not in listed
    state = [p for p in shop.home.rglob("state.db*") if p.is_file()]
    assert state
    for path in state:
        assert TOKEN.encode() not in path.read_bytes(), path
    with contextlib.closing(sqlite3.connect(next(p for p in state if p.name == "state.db"))) as db:
        rows = db.execute("select message, data from events where kind = 'run'").fetchall()
    assert rows and all(TOKEN not in str(row) for row in rows)


def test_history_lists_runs(deployed: tuple[Project, str]) -> None:
    shop, _ = deployed
    shop.run("run", "staging", "api", "--", *py("raise SystemExit(3)"), check=False)
    human = shop.run("history", "staging").stdout
    assert "one-off commands:" in human
    assert "run  api  \"python3 -c 'raise SystemExit(3)'\"  exit 3" in human, human
    items: Any = shop.json("history", "staging")
    runs = [i for i in items if i["kind"] == "run"]
    latest = runs[0]
    assert latest["argv"] == ["python3", "-c", "raise SystemExit(3)"]
    assert latest["exit_code"] == 3 and latest["status"] == "failed"
    assert latest["service"] == "api" and latest["user"] == "tester@example.com"
    assert latest["duration_s"] >= 0 and latest["started_at"] <= latest["finished_at"]
    assert any(i["kind"] == "deploy" for i in items)


def test_command_not_found_exits_127(deployed: tuple[Project, str]) -> None:
    shop, _ = deployed
    result = shop.run("run", "staging", "api", "--", "no-such-command-x", check=False)
    assert result.returncode == 127
    assert "command not found: no-such-command-x" in result.stderr
    assert "Traceback" not in result.stderr


def test_interactive_on_a_terminal(deployed: tuple[Project, str]) -> None:
    shop, _ = deployed
    code = "print('hello', input('name? '))"
    output, status = on_terminal(
        shop, ["run", "staging", "api", "--", *py(code)], [("name? ", b"Ada\n")]
    )
    assert "name? " in output and "hello Ada" in output, output
    assert status == 0


def test_ctrl_c_goes_to_the_command(deployed: tuple[Project, str]) -> None:
    shop, _ = deployed
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGINT, lambda *a: sys.exit(5))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    output, status = on_terminal(
        shop, ["run", "staging", "api", "--", *py(code)], [("ready", b"\x03")]
    )
    assert status == 5, output
    assert "Traceback" not in output and "interrupted" not in output


def test_usage_errors(shop: Project) -> None:
    def fails(*args: str) -> tuple[int, str]:
        result = shop.run("run", *args, check=False)
        assert "Traceback" not in result.stderr
        return result.returncode, result.stderr

    code, err = fails("staging", "api", "--", "true")
    assert code == 1
    assert "no release of api is running in staging" in err
    assert "deploy first: conveyor deploy staging" in err
    code, err = fails("nowhere", "api", "--", "true")
    assert code == 2 and 'unknown environment "nowhere"' in err
    code, err = fails("staging", "nosuch", "--", "true")
    assert code == 2 and 'unknown service "nosuch"' in err
    code, err = fails("staging", "api")
    assert code == 2 and "no command given" in err


def on_terminal(shop: Project, args: list[str], dialog: list[tuple[str, bytes]]) -> tuple[str, int]:
    """Run `conveyor ARGS` on a pseudo-terminal (its controlling terminal); for each
    (prompt, keys) of `dialog`, wait for the prompt and type the keys. Returns what
    it printed and its exit status."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a new session whose terminal is the pty
        os.chdir(shop.root)
        os.execvpe(sys.executable, [*CONVEYOR, *args], shop.env)
    output = b""
    answered = 0  # output up to here has been answered
    steps = list(dialog)
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: the terminal's last process has exited
                    break
                if not chunk:
                    break
                output += chunk
            if steps and steps[0][0].encode() in output[answered:]:
                prompt, keys = steps.pop(0)
                answered = output.index(prompt.encode(), answered) + len(prompt)
                time.sleep(0.2)  # let it reach input() / sleep()
                os.write(fd, keys)
        else:
            os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return output.decode(errors="replace"), os.waitstatus_to_exitcode(status)
