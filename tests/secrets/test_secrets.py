"""Secrets: the dotenv format, the encrypted file, the key, each provider, the config,
and the one redaction filter every output goes through."""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import sys
from pathlib import Path

import pytest
import yaml

from conveyor.config import load_config
from conveyor.errors import ConfigError
from conveyor.redaction import (
    LineRedactor,
    RedactingStream,
    redact_text,
    register_secrets,
    registered_secrets,
)
from conveyor.secrets import SecretsError, dotenv, keys, vault
from conveyor.secrets.resolve import missing, resolve

BASE = {
    "project": "vaulty",
    "services": {"web": {"run": ["python3", "app.py"], "route": {"path": "/"}}},
    "environments": {"production": {"listen": "127.0.0.1:18080"}},
}


@pytest.fixture
def keyhome(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv(keys.KEY_VARIABLE, raising=False)
    monkeypatch.delenv(keys.KEY_FILE_VARIABLE, raising=False)
    return tmp_path / "config"


def project(tmp_path: Path, secrets: dict[str, object], top: dict[str, object] | None = None):
    config = yaml.safe_load(yaml.safe_dump(BASE))
    config["environments"]["production"]["secrets"] = secrets
    if top:
        config["secrets"] = top
    path = tmp_path / "proj" / "conveyor.yml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return load_config(path, defer_unset=True)


# -- the file format -------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "with space",
        'quo"te',
        "back\\slash",
        "two\nlines",
        "dollar $HOME",
        "tab\there",
        "#hash",
        "'single'",
        "ünï€ode",
        "=eq=",
    ],
)
def test_dotenv_round_trip(value: str) -> None:
    assert dotenv.parse(dotenv.render({"A": value, "B": "x"})) == {"A": value, "B": "x"}


def test_dotenv_reads_what_people_write() -> None:
    text = "# c\n\nexport A=1\nB = 'x # y'\nC=\"l1\nl2\"\nD=\n"
    assert dotenv.parse(text) == {"A": "1", "B": "x # y", "C": "l1\nl2", "D": ""}


def test_dotenv_errors_name_the_line_not_its_text() -> None:
    with pytest.raises(dotenv.DotenvError, match="line 2") as info:
        dotenv.parse("A=1\nnot-a-secret-hunter2\n")
    assert "hunter2" not in str(info.value)


# -- the key and the encrypted file ------------------------------------------------------


def test_key_is_private_and_outside_the_project(keyhome: Path, tmp_path: Path) -> None:
    path, identity, kept = keys.write_new_key("vaulty")
    assert path == keyhome / "conveyor" / "keys" / "vaulty.key"
    assert kept is None
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert str(keys.load_identity("vaulty").to_public()) == str(identity.to_public())


def test_missing_key_says_how_to_get_one(keyhome: Path) -> None:
    with pytest.raises(SecretsError) as info:
        keys.load_identity("vaulty")
    assert "vaulty.key does not exist" in info.value.message
    assert "teammate" in (info.value.hint or "")
    assert "conveyor secrets init" in (info.value.hint or "")


def test_key_from_the_environment_for_ci(keyhome: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, identity, _ = keys.write_new_key("other")
    monkeypatch.setenv(keys.KEY_VARIABLE, str(identity))
    assert str(keys.load_identity("vaulty").to_public()) == str(identity.to_public())
    assert str(identity) in registered_secrets()  # the key itself is masked too
    monkeypatch.delenv(keys.KEY_VARIABLE)
    file = keyhome / "elsewhere.key"
    file.write_text(f"# a comment\n{identity}\n")
    monkeypatch.setenv(keys.KEY_FILE_VARIABLE, str(file))
    assert str(keys.load_identity("vaulty").to_public()) == str(identity.to_public())
    monkeypatch.setenv(keys.KEY_VARIABLE, "AGE-SECRET-KEY-nonsense")
    with pytest.raises(SecretsError, match="not an age secret key"):
        keys.load_identity("vaulty")


def test_encrypted_file_round_trip_and_wrong_key(keyhome: Path, tmp_path: Path) -> None:
    _, identity, _ = keys.write_new_key("vaulty")
    path = vault.write(tmp_path, "production", {"A": "alpha-1", "B": "b\nc"}, identity)
    assert path == tmp_path / "secrets" / "production.age"
    data = path.read_bytes()
    assert data.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----")
    assert b"alpha-1" not in data
    assert vault.read(tmp_path, "production", identity) == {"A": "alpha-1", "B": "b\nc"}
    assert vault.read(tmp_path, "staging", identity) == {}
    _, other, _ = keys.write_new_key("vaulty")
    with pytest.raises(SecretsError, match="cannot decrypt"):
        vault.read(tmp_path, "production", other)


# -- providers ----------------------------------------------------------------------------


def test_each_provider(keyhome: Path, tmp_path: Path) -> None:
    envfile = tmp_path / "prod.env"
    envfile.write_text('SMTP_PASSWORD="smtp pass"\nOTHER=o-value\n')
    loaded = project(
        tmp_path,
        {
            "SECRET_KEY": "encrypted",
            "STRIPE_KEY": {"env": "STRIPE_LIVE_KEY"},
            "DB_PASSWORD": {"command": [sys.executable, "-c", "print('db-pass')"]},
            "SMTP_PASSWORD": {"dotenv": str(envfile)},
            "RENAMED": {"dotenv": str(envfile), "key": "OTHER"},
        },
    )
    _, identity, _ = keys.write_new_key("vaulty")
    vault.write(loaded.root, "production", {"SECRET_KEY": "sk-123"}, identity)
    values = resolve(loaded, "production", {"STRIPE_LIVE_KEY": "stripe-1", "PATH": ""})
    assert values == {
        "SECRET_KEY": "sk-123",
        "STRIPE_KEY": "stripe-1",
        "DB_PASSWORD": "db-pass",  # the trailing newline stripped
        "SMTP_PASSWORD": "smtp pass",
        "RENAMED": "o-value",
    }
    assert set(values.values()) <= registered_secrets()
    assert missing(loaded, "production", {"STRIPE_LIVE_KEY": "x"}) == []


def test_missing_secrets_are_named_with_their_provider(keyhome: Path, tmp_path: Path) -> None:
    loaded = project(
        tmp_path,
        {
            "SECRET_KEY": "encrypted",
            "STRIPE_KEY": {"env": "STRIPE_LIVE_KEY"},
            "DB_PASSWORD": {"command": ["no-such-program-xyz"]},
            "SMTP_PASSWORD": {"dotenv": str(tmp_path / "nope.env")},
        },
    )
    problems = missing(loaded, "production", {"PATH": os.environ["PATH"]})
    text = "\n".join(problems)
    assert len(problems) == 4, text
    assert "SECRET_KEY (encrypted in secrets/production.age): no age key" in text
    assert "STRIPE_KEY (environment variable $STRIPE_LIVE_KEY): $STRIPE_LIVE_KEY is not set" in text
    assert "DB_PASSWORD (command `no-such-program-xyz`): no-such-program-xyz is not found" in text
    assert f"{tmp_path / 'nope.env'} does not exist" in text
    _, identity, _ = keys.write_new_key("vaulty")
    vault.write(loaded.root, "production", {"OTHER": "x"}, identity)
    assert "SECRET_KEY (encrypted in secrets/production.age): not in secrets/production.age" in (
        missing(loaded, "production", {})
    )


def test_failing_command_is_refused_and_what_it_printed_masked(
    keyhome: Path, tmp_path: Path
) -> None:
    script = tmp_path / "fetch.py"
    script.write_text(
        "import sys\nprint('half-secret-value')\n"
        "print('oops half-secret-value', file=sys.stderr)\nsys.exit(3)\n"
    )
    loaded = project(tmp_path, {"DB_PASSWORD": {"command": [sys.executable, str(script)]}})
    with pytest.raises(SecretsError) as info:
        resolve(loaded, "production", {})
    message = info.value.message
    assert "1 secret of production cannot be resolved" in message
    assert "DB_PASSWORD (command" in message and "exited 3: oops ***" in message
    assert "half-secret-value" not in message


def test_top_level_secrets_are_merged_under_the_environment(tmp_path: Path) -> None:
    loaded = project(
        tmp_path,
        {"A": {"env": "ENV_A"}},
        top={"A": {"env": "TOP_A"}, "B": {"env": "TOP_B"}},
    )
    assert resolve(loaded, "production", {"ENV_A": "aaa", "TOP_B": "bbb"}) == {
        "A": "aaa",
        "B": "bbb",
    }


def test_config_errors_have_key_paths(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        project(
            tmp_path,
            {
                "E": {"vault": "x"},
                "F": {"env": "X", "command": ["a"]},
                "G": 12,
                "H": {"env": "bad name"},
                "1X": "encrypted",
                "I": {"command": []},
                "J": {"dotenv": "f", "extra": 1},
            },
        )
    issues = "\n".join(info.value.issues)
    assert "environments/production/secrets/E: expected encrypted, {env: VAR}" in issues
    assert "got a mapping with vault" in issues
    assert "environments/production/secrets/F: name one provider, not env and command" in issues
    assert "environments/production/secrets/G: expected encrypted" in issues
    assert "environments/production/secrets/H/env: invalid variable name" in issues
    assert "environments/production/secrets/1X: invalid variable name" in issues
    assert "environments/production/secrets/I/command" in issues
    assert "environments/production/secrets/J/extra" in issues


# -- the one redaction filter --------------------------------------------------------------


def test_registered_values_are_masked_everywhere_text_goes() -> None:
    register_secrets(['s3cr3t-"quoted"', "multi-line-key-AAAA\nsecond-line-BBBB", "prod5"])
    assert redact_text('got s3cr3t-"quoted" here', []) == "got *** here"
    assert redact_text('{"v": "s3cr3t-\\"quoted\\""}', []) == '{"v": "***"}'  # as JSON has it
    assert redact_text("line second-line-BBBB", []) == "line ***"
    # Too short to mask everywhere: it would hide names ("prod5-web-1") and paths.
    assert redact_text("prod5-web-1", []) == "prod5-web-1"
    out = io.StringIO()
    RedactingStream(out).write('x s3cr3t-"quoted" y\n')
    assert out.getvalue() == "x *** y\n"
    log = LineRedactor()
    data = log.feed(b'one s3cr3t-"quo') + log.feed(b'ted" two\nrest s3') + log.feed(b"cr3t")
    assert data + log.flush() == b"one *** two\nrest s3cr3t"  # only whole values


def test_the_state_database_never_stores_a_registered_value(tmp_path: Path) -> None:
    from conveyor.store import open_store

    register_secrets(["planted-secret-42"])
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    store.add_event(
        "note",
        "failed with planted-secret-42",
        environment="production",
        data={"argv": ["x", "planted-secret-42"]},
    )
    assert store.list_events("production")[0].data == {"argv": ["x", "***"]}
    store.close()
    for path in tmp_path.iterdir():
        assert b"planted-secret-42" not in path.read_bytes(), path
    with contextlib.closing(sqlite3.connect(tmp_path / "state.db")) as db:
        rows = db.execute("select message from events").fetchall()
    assert rows == [("failed with ***",)]
