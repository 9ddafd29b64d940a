"""End to end: secrets from all four providers reach a deployed app, its migration, its
hooks and `conveyor run` as variables, and no artefact Conveyor writes holds a value.

The app answers with SHA-256 digests of the variables it got (never the values). The
known values are then searched for in every file of the Conveyor home (state DB,
journal, logs, releases, data), the key directory and the project, and in the output of
every command run, a failing deploy and a refused one included. The one place that must
hold them is the supervisord program file an instance is started from (mode 0600 in a
0700 directory): supervisord restarts instances from it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.apps import make_app
from tests.support.planted import Recorder, assert_nowhere_but_programs
from tests.support.project import CONVEYOR, Project

pytestmark = pytest.mark.slow

VALUES = {
    "SECRET_KEY": "sk-live-7Hq2-encrypted-value",
    "STRIPE_KEY": "stripe-live-Xe4-env-value",
    "DB_PASSWORD": "db-pass-Pw9-command-value",
    "SMTP_PASSWORD": 'smtp "quoted" Sm3 $dotenv value',
}

APP = """\
import hashlib, os
from http.server import BaseHTTPRequestHandler, HTTPServer

NAMES = ("SECRET_KEY", "STRIPE_KEY", "DB_PASSWORD", "SMTP_PASSWORD")


def digest(name):
    return hashlib.sha256(os.environ.get(name, "").encode()).hexdigest()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = "\\n".join(f"{n}={digest(n)}" for n in NAMES).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""

# The release phase: records the digest of its SECRET_KEY; fails, printing the value, when
# the release holds a file "fail" (the failing deploy).
MIGRATE = """\
import hashlib, os, pathlib, sys
key = os.environ.get("SECRET_KEY", "")
out = pathlib.Path(os.environ["DATA_DIR"]) / "migrated"
out.write_text(hashlib.sha256(key.encode()).hexdigest())
if pathlib.Path("fail").exists():
    print(f"migration failed; settings had SECRET_KEY={key} DB={os.environ.get('DB_PASSWORD')}")
    sys.exit(1)
print("migrated")
"""

HOOK = """\
import hashlib, os, pathlib
pathlib.Path(os.environ["HOOK_OUT"]).write_text(
    hashlib.sha256(os.environ.get("STRIPE_KEY", "").encode()).hexdigest()
)
print("hook saw STRIPE_KEY=" + os.environ.get("STRIPE_KEY", ""), flush=True)
"""

CONFIG = """\
project: vaulty
databases:
  main:
    url: sqlite:///{db}
services:
  web:
    run: [python3, app.py]
    replicas: 1
    route: {{path: /}}
    health: {{type: http, path: /, interval: 200ms}}
    migrate:
      command: [python3, migrate.py]
      database: main
      pending: false
hooks:
  post_deploy:
    - [python3, hook.py]
secrets:
  SMTP_PASSWORD: {{dotenv: {dotenv}}}
environments:
  production:
    listen: ${{LISTEN}}
    secrets:
      SECRET_KEY: encrypted
      STRIPE_KEY: {{env: STRIPE_LIVE_KEY}}
      DB_PASSWORD: {{command: [cat, {dbpass}]}}
"""


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture(scope="module")
def vaulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, Recorder, Path]]:
    tmp = tmp_path_factory.mktemp("secrets")
    outside = tmp / "outside"  # the deployer's files: outside the repository
    outside.mkdir()
    (outside / "prod.env").write_text('SMTP_PASSWORD="smtp \\"quoted\\" Sm3 \\$dotenv value"\n')
    (outside / "dbpass").write_text(VALUES["DB_PASSWORD"] + "\n")
    shared = tmp / "db"  # the app's user (not root) writes the database and its journal
    shared.mkdir()
    shared.chmod(0o777)
    config = CONFIG.format(
        db=shared / "main.sqlite3", dotenv=outside / "prod.env", dbpass=outside / "dbpass"
    )
    project = make_app(tmp, config, {"app.py": APP, "migrate.py": MIGRATE, "hook.py": HOOK})
    project.env.update(
        XDG_CONFIG_HOME=str(tmp / "config"),
        HOOK_OUT=str(outside / "hook-out"),
        STRIPE_LIVE_KEY=VALUES["STRIPE_KEY"],
    )
    for name in ("CONVEYOR_AGE_KEY", "CONVEYOR_AGE_KEY_FILE"):
        project.env.pop(name, None)
    cli = Recorder(project)
    try:
        cli("secrets", "init")
        done = subprocess.run(
            [*CONVEYOR, "secrets", "set", "production", "SECRET_KEY"],
            cwd=project.root,
            env=project.env,
            input=VALUES["SECRET_KEY"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        cli.outputs.append(done.stdout + done.stderr)
        project.commit("the encrypted secrets")
        yield project, cli, outside
    finally:
        project.shutdown()


def answer(project: Project) -> dict[str, str]:
    url = f"http://{project.env['LISTEN']}/"
    with urllib.request.urlopen(url, timeout=5) as response:
        lines = response.read().decode().splitlines()
    return dict(line.split("=", 1) for line in lines)


def test_every_provider_reaches_the_app_and_nothing_holds_a_value(
    vaulty: tuple[Project, Recorder, Path],
) -> None:
    project, cli, outside = vaulty
    assert "all resolvable" in cli("validate", "production").stdout
    cli("build")
    first = cli("deploy", "production")
    assert "succeeded" in first.stdout

    # The instance, the release phase and the hook got the values.
    assert answer(project) == {name: digest(value) for name, value in VALUES.items()}
    data = project.home / "data" / "production" / "web" / "migrated"
    assert data.read_text() == digest(VALUES["SECRET_KEY"])
    assert (outside / "hook-out").read_text() == digest(VALUES["STRIPE_KEY"])
    logs = project.home / "logs" / "deployments"
    assert "hook saw STRIPE_KEY=***" in "".join(p.read_text() for p in logs.iterdir())

    # `conveyor run` too; its command line (which holds a value here) is kept masked.
    code = "import hashlib, os, sys; print(hashlib.sha256(os.environ['DB_PASSWORD'].encode()).hexdigest(), len(sys.argv))"
    ran = project.run(
        "run", "production", "web", "--", "python3", "-c", code, VALUES["DB_PASSWORD"]
    )
    assert ran.stdout.split() == [digest(VALUES["DB_PASSWORD"]), "2"]
    # An error message that quotes a value (a command named like one) shows it masked.
    typo = cli("run", "production", "web", "--", VALUES["SECRET_KEY"], check=False)
    assert typo.returncode == 127 and "command not found: ***" in typo.stderr
    history = cli("history", "production")
    assert "***" in history.stdout

    # A missing secret: refused before anything changes, naming it and its provider.
    before = project.json("history", "production")
    del_env = dict(project.env)
    del_env.pop("STRIPE_LIVE_KEY")
    refused = subprocess.run(
        [*CONVEYOR, "deploy", "production"],
        cwd=project.root,
        env=del_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    cli.outputs.append(refused.stdout + refused.stderr)
    assert refused.returncode == 1
    assert "STRIPE_KEY (environment variable $STRIPE_LIVE_KEY): $STRIPE_LIVE_KEY is not set" in (
        refused.stderr
    )
    assert "nothing was changed" in refused.stderr
    assert project.json("history", "production") == before
    assert answer(project)["SECRET_KEY"] == digest(VALUES["SECRET_KEY"])

    # A failing deploy whose migration prints values: shown and logged masked.
    (project.root / "fail").write_text("yes\n")
    project.commit("a release whose migration fails")
    cli("build")
    # Its message holds a value, as a pasted one would: the history keeps it masked.
    message = f"retry after rotating {VALUES['DB_PASSWORD']}"
    failed = cli("deploy", "production", "--json", "-m", message, check=False)
    assert failed.returncode != 0
    assert "migration failed; settings had SECRET_KEY=*** DB=***" in failed.stdout + failed.stderr
    latest = cli("history", "production", "--json").stdout
    reasons = [r.get("reason") for r in json.loads(latest) if r.get("kind") == "deploy"]
    assert reasons[0] == "retry after rotating ***", reasons

    for args in (
        ("status", "production"),
        ("status", "production", "--json"),
        ("history", "production", "--json"),
        ("logs", "production", "web"),
        ("secrets", "list", "production"),
        ("secrets", "list", "production", "--json"),
    ):
        cli(*args, check=False)
    for record in project.json("history", "production"):  # type: ignore[union-attr]
        if isinstance(record, dict) and record.get("kind") == "deploy":
            cli("explain", str(record["id"]), check=False)
            cli("explain", str(record["id"]), "--json", check=False)

    # The search: every output, every file.
    roots = [Path(project.env["XDG_CONFIG_HOME"])]
    assert_nowhere_but_programs(project, VALUES.values(), cli.outputs, roots)


CHATTY = """\
import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

print("starting with token " + os.environ["API_TOKEN"], flush=True)

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def test_conveyor_logs_masks_what_an_app_prints_of_its_secrets(tmp_path: Path) -> None:
    from tests.support.apps import make_app

    token = "tok-" + "9f3c1a7e5b2d4c6e"
    config = (
        "project: chatty\n"
        "services:\n  web:\n    run: [python3, server.py, $PORT]\n"
        "    health: {type: http, path: /, interval: 100ms}\n"
        "environments:\n  staging:\n    listen: ${LISTEN}\n"
        "    secrets: {API_TOKEN: {env: CHATTY_TOKEN}}\n"
    )
    app = make_app(tmp_path, config, {"server.py": CHATTY})
    app.env["CHATTY_TOKEN"] = token
    try:
        app.run("deploy", "staging", "--build")
        shown = app.run("logs", "staging", "web")
        assert "starting with token ***" in shown.stdout, shown.stdout
        assert token not in shown.stdout + shown.stderr
        # Where the secret cannot be resolved, the user is told the output is not masked.
        del app.env["CHATTY_TOKEN"]
        unmasked = app.run("logs", "staging", "web")
        assert "cannot be resolved here, so the output below is not masked" in unmasked.stderr
    finally:
        app.shutdown()
