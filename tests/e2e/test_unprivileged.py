"""End to end: run as root, Conveyor runs the app as the unprivileged `conveyor` user.

The sealed release is then read-only to the app for real (only `writable:` takes
writes), the app owns its data directory, and nobody else reads Conveyor's state,
logs or the release. The suite runs as root, so every other e2e test deploys this
way too; this file checks what the user sees of it.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import urllib.request
from pathlib import Path

import pytest

from tests.support.apps import make_app

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the app switches user only under root"),
]

APP = """\
import json
import os
import pwd
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def attempt(path):
    try:
        with open(path, "w") as handle:
            handle.write("x")
        return "written"
    except OSError as exc:
        return exc.strerror


def readable(path):
    try:
        with open(path, "rb") as handle:
            handle.read(1)
        return "read"
    except OSError as exc:
        return exc.strerror


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        answer = {
            "user": pwd.getpwuid(os.getuid()).pw_name,
            "home": os.environ.get("HOME"),
            "release": attempt("probe.txt"),
            "writable": attempt("cache/probe.txt"),
            "data": attempt(os.path.join(os.environ["DATA_DIR"], "probe.txt")),
            "state": readable(os.environ["STATE_DB"]),
        }
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""

CONFIG = """\
project: unprivileged
services:
  web:
    run: python3 app.py
    writable: [cache]
    env:
      STATE_DB: ${STATE_DB}
    health: {type: http, path: /}
environments:
  staging:
    listen: ${LISTEN}
"""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _get(listen: str) -> dict[str, str]:
    with urllib.request.urlopen(f"http://{listen}/", timeout=10) as response:
        answer: dict[str, str] = json.loads(response.read())
    return answer


def test_the_app_runs_as_an_unprivileged_user_that_cannot_touch_its_release(
    tmp_path: Path,
) -> None:
    app = make_app(tmp_path, CONFIG, {"app.py": APP})
    app.env["STATE_DB"] = str(app.home / "state.db")
    try:
        app.run("deploy", "staging", "--build")
        answer = _get(app.env["LISTEN"])
        data_dir = app.home / "data" / "staging" / "web"
        assert answer == {
            "user": "conveyor",
            "home": str(data_dir),
            "release": "Permission denied",  # sealed for real, not only for the digest
            "writable": "written",
            "data": "written",
            "state": "Permission denied",
        }
        # The release served and was written to only where it may: it is intact, so a
        # rollback to it (which checks its digest first) starts it again.
        (app.root / "app.py").write_text(APP + "# v2\n")
        app.commit("v2")
        app.run("deploy", "staging", "--build")
        app.run("rollback", "staging")
        assert _get(app.env["LISTEN"])["user"] == "conveyor"

        # One-off commands run as the same user, with the same data directory.
        whoami = app.run("run", "staging", "web", "--", "id", "-un")
        assert whoami.stdout.strip() == "conveyor"

        # Nobody but root reads Conveyor's files; the app owns its data.
        conveyor = pwd.getpwnam("conveyor")
        assert _mode(app.home) == 0o711  # passable to the app, not listable
        assert _mode(app.home / "state.db") == 0o600
        assert _mode(app.home / "logs") == 0o700
        logs = [p for p in (app.home / "logs").rglob("*") if p.is_file()]
        assert logs and {_mode(p) for p in logs} == {0o600}  # instance, build, deployment logs
        assert _mode(app.home / "supervisor") == 0o700
        assert data_dir.stat().st_uid == conveyor.pw_uid
        assert _mode(data_dir) == 0o700
        assert (data_dir / "probe.txt").stat().st_uid == conveyor.pw_uid
        releases = [p for p in (app.home / "releases" / "web").iterdir() if p.is_dir()]
        assert len(releases) == 2
        for release in releases:
            assert release.stat().st_gid == conveyor.pw_gid
            assert _mode(release) == 0o550  # the app's group may read it; nobody else
            assert (release / "cache").stat().st_uid == conveyor.pw_uid
            assert not (release / "probe.txt").exists()
    finally:
        app.shutdown()


def test_an_interpreter_the_app_user_cannot_run_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    # As a pyenv python under /root: the build works as root, the app user could
    # not start it. The deploy says so, names the directory, and changes nothing.
    private = tmp_path / "private"
    (private / "bin").mkdir(parents=True)
    (private / "bin" / "python3").symlink_to("/usr/bin/python3")
    private.chmod(0o700)
    config = CONFIG.replace("run: python3 app.py", f"run: {private}/bin/python3 app.py")
    app = make_app(tmp_path, config, {"app.py": APP})
    app.env["STATE_DB"] = str(app.home / "state.db")
    try:
        result = app.run("deploy", "staging", "--build", check=False)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert f"may not run the command's program {private}/bin/python3" in result.stderr
        assert f"may not enter {private} (mode 700)" in result.stderr
        assert "run_as:" in result.stderr  # the way out
        status = app.run("status", "staging", "--json")
        (web,) = json.loads(status.stdout)["environments"][0]["services"]
        assert (web["release"], web["instances"]) == (None, [])
    finally:
        app.shutdown()


def test_run_as_names_the_user_and_an_unknown_one_is_a_clear_error(tmp_path: Path) -> None:
    config = CONFIG.replace(
        "    writable: [cache]\n", "    writable: [cache]\n    run_as: nobody\n"
    )
    app = make_app(tmp_path, config, {"app.py": APP})
    app.env["STATE_DB"] = str(app.home / "state.db")
    try:
        app.run("deploy", "staging", "--build")
        assert _get(app.env["LISTEN"])["user"] == "nobody"

        (app.root / "conveyor.yml").write_text(config.replace("nobody", "no-such-user"))
        result = app.run("run", "staging", "web", "--", "id", "-un", check=False)
        assert result.returncode != 0
        assert "run_as: user 'no-such-user' does not exist on this machine" in result.stderr
        assert "Traceback" not in result.stderr
        assert _get(app.env["LISTEN"])["user"] == "nobody"  # the running release is unharmed
    finally:
        app.shutdown()
