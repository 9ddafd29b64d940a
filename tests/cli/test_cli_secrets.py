"""`conveyor secrets init|set|list|rm|edit|rotate` and `conveyor validate ENV`, through the
real CLI: values go in on standard input and never come out."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.apps import make_app
from tests.support.project import CONVEYOR, Project, free_port

CONFIG = """\
project: vaulty
services:
  web:
    run: [python3, app.py]
    route: {path: /}
environments:
  production:
    listen: ${LISTEN}
    secrets:
      SECRET_KEY: encrypted
      API_TOKEN: encrypted
      STRIPE_KEY: {env: STRIPE_LIVE_KEY}
  staging:
    listen: ${LISTEN2}
    secrets:
      SECRET_KEY: encrypted
"""
VALUE = "sk-live-Zq9-hunter2-value"
TOKEN = "tok-Ab7-second-value"


@pytest.fixture
def app(tmp_path: Path) -> Project:
    project = make_app(tmp_path, CONFIG)
    project.env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    project.env["LISTEN2"] = f"127.0.0.1:{free_port()}"
    for name in ("CONVEYOR_AGE_KEY", "CONVEYOR_AGE_KEY_FILE", "STRIPE_LIVE_KEY"):
        project.env.pop(name, None)
    return project


def key_file(app: Project) -> Path:
    return Path(app.env["XDG_CONFIG_HOME"]) / "conveyor" / "keys" / "vaulty.key"


def set_secret(app: Project, environment: str, name: str, value: str) -> str:
    done = subprocess.run(
        [*CONVEYOR, "secrets", "set", environment, name],
        cwd=app.root,
        env=app.env,
        input=value + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert value not in done.stdout + done.stderr
    return done.stdout + done.stderr


def test_set_list_rm_without_ever_showing_a_value(app: Project) -> None:
    out = app.run("secrets", "init").stdout
    assert "made the age key of vaulty" in out and "public key: age1" in out
    assert key_file(app).stat().st_mode & 0o777 == 0o600
    again = app.run("secrets", "init", check=False)
    assert again.returncode == 2 and "has a key already" in again.stderr

    assert "added SECRET_KEY in secrets/production.age" in set_secret(
        app, "production", "SECRET_KEY", VALUE
    )
    set_secret(app, "production", "API_TOKEN", TOKEN)
    assert "updated SECRET_KEY" in set_secret(app, "production", "SECRET_KEY", VALUE + "2")
    stray = set_secret(app, "production", "UNDECLARED", "not-declared-value")
    assert "UNDECLARED is not declared as encrypted" in stray
    encrypted = (app.root / "secrets" / "production.age").read_bytes()
    assert VALUE.encode() not in encrypted and TOKEN.encode() not in encrypted

    # The value never on the command line: an extra argument is a usage error.
    assert app.run("secrets", "set", "production", "X", "value", check=False).returncode == 2

    listed = app.run("secrets", "list", "production")
    text = listed.stdout + listed.stderr
    assert "SECRET_KEY" in text and "API_TOKEN" in text and "encrypted in" in text
    assert "STRIPE_KEY" in text and "environment variable $STRIPE_LIVE_KEY" in text
    assert "UNDECLARED" in text and "not declared" in text
    as_json = app.json("secrets", "list", "production")
    assert {r["name"]: r.get("stored") for r in as_json["secrets"]} == {  # type: ignore[index]
        "API_TOKEN": True,
        "SECRET_KEY": True,
        "STRIPE_KEY": None,
    }
    for output in (text, json.dumps(as_json)):
        assert VALUE not in output and TOKEN not in output and "not-declared-value" not in output

    assert "removed API_TOKEN" in app.run("secrets", "rm", "production", "API_TOKEN").stdout
    listed = app.run("secrets", "list", "production").stdout
    assert "API_TOKEN" in listed and "MISSING" in listed
    assert app.run("secrets", "rm", "production", "API_TOKEN", check=False).returncode == 2


def test_validate_names_missing_secrets_without_values(app: Project) -> None:
    app.run("secrets", "init")
    set_secret(app, "production", "SECRET_KEY", VALUE)
    result = app.run("validate", "production", check=False)
    assert result.returncode == 2
    assert "API_TOKEN (encrypted in secrets/production.age): not in" in result.stderr
    assert "STRIPE_KEY (environment variable $STRIPE_LIVE_KEY): $STRIPE_LIVE_KEY is not set" in (
        result.stderr
    )
    assert VALUE not in result.stdout + result.stderr
    set_secret(app, "production", "API_TOKEN", TOKEN)
    ok = app.run("validate", "production", env={"STRIPE_LIVE_KEY": "stripe-live-1"})
    assert "production: 3 secrets, all resolvable" in ok.stdout
    # Without ENV, validate checks the file only, as before.
    assert app.run("validate").returncode == 0


def test_edit_uses_a_private_temp_file_and_reencrypts(app: Project, tmp_path: Path) -> None:
    app.run("secrets", "init")
    set_secret(app, "production", "SECRET_KEY", VALUE)
    seen = tmp_path / "seen"
    editor = tmp_path / "editor.sh"
    editor.write_text(
        "#!/bin/sh\n"
        f'echo "$(stat -c %a "$1") $(stat -c %a "$(dirname "$1")")" > {seen}\n'
        f'echo "$1" >> {seen}\n'
        'sed -i "s/^SECRET_KEY=.*/SECRET_KEY=edited-value-77/" "$1"\n'
        'echo "API_TOKEN=added-by-edit" >> "$1"\n'
    )
    editor.chmod(0o755)
    out = app.run("secrets", "edit", "production", env={"EDITOR": str(editor)}).stdout
    assert "added API_TOKEN; changed SECRET_KEY" in out
    modes, path = seen.read_text().splitlines()
    assert modes == "600 700"
    assert not Path(path).exists() and not Path(path).parent.exists()
    # What the edit wrote is what a deploy resolves.
    check = app.run("validate", "production", env={"STRIPE_LIVE_KEY": "x" * 8})
    assert "all resolvable" in check.stdout
    broken = tmp_path / "broken.sh"
    broken.write_text('#!/bin/sh\necho "not a dotenv line" >> "$1"\n')
    broken.chmod(0o755)
    failed = app.run("secrets", "edit", "production", env={"EDITOR": str(broken)}, check=False)
    assert failed.returncode == 1 and "nothing changed" in failed.stderr


def test_rotate_reencrypts_every_environment(app: Project) -> None:
    app.run("secrets", "init")
    set_secret(app, "production", "SECRET_KEY", VALUE)
    set_secret(app, "production", "API_TOKEN", TOKEN)
    set_secret(app, "staging", "SECRET_KEY", "staging-value-1")
    old_key = key_file(app).read_text()
    before = {
        e: (app.root / "secrets" / f"{e}.age").read_bytes() for e in ("production", "staging")
    }
    out = app.run("secrets", "rotate").stdout
    assert "re-encrypted: secrets/production.age, secrets/staging.age" in out
    assert "previous key is kept" in out
    assert key_file(app).read_text() != old_key
    assert key_file(app).stat().st_mode & 0o777 == 0o600
    for environment, data in before.items():
        assert (app.root / "secrets" / f"{environment}.age").read_bytes() != data
    # The new key decrypts both; the old one no longer does.
    assert (
        "all resolvable"
        in app.run("validate", "production", env={"STRIPE_LIVE_KEY": "x" * 8}).stdout
    )
    assert "all resolvable" in app.run("validate", "staging").stdout
    old_line = old_key.strip().splitlines()[-1]
    stale = app.run("validate", "staging", env={"CONVEYOR_AGE_KEY": old_line}, check=False)
    assert stale.returncode == 2 and "cannot decrypt" in stale.stderr
    assert old_line not in stale.stdout + stale.stderr
