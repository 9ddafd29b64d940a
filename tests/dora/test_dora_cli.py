"""`conveyor dora` on a real git repository and a state database written through the
real `Store` API: the commits between releases come from git."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor.paths import Paths
from conveyor.store import open_store, repository
from conveyor.store.records import ROLLED_BACK, SUCCEEDED, DeploymentRecord, ReleaseRecord

CONFIG = """\
project: shop
services:
  web:
    run: [python3, server.py]
environments:
  staging: {listen: 127.0.0.1:18080}
  production: {listen: 127.0.0.1:18090}
"""
NOW = datetime.now(UTC).replace(microsecond=0)


def git(root: Path, *args: str, when: datetime | None = None) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    if when is not None:
        env["GIT_COMMITTER_DATE"] = env["GIT_AUTHOR_DATE"] = f"@{int(when.timestamp())} +0000"
    done = subprocess.run(
        ["git", *args], cwd=root, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def commit(root: Path, name: str, when: datetime) -> str:
    (root / "server.py").write_text(f"# {name}\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", name, when=when)
    return git(root, "rev-parse", "HEAD")


def test_dora_reads_the_history_and_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "shop"
    root.mkdir()
    (root / "conveyor.yml").write_text(CONFIG)
    git(root, "init", "-q", "-b", "main")
    days = [NOW - timedelta(days=d) for d in (6, 5, 4)]
    c1 = commit(root, "one", days[0])
    commit(root, "two", days[1])  # reaches production with c3, as git tells
    c3 = commit(root, "three", days[1] + timedelta(hours=1))
    home = tmp_path / "home"
    with open_store(f"sqlite:///{Paths(home).ensure().state_db}") as store:
        for rid, sha in (("r1", c1), ("r3", c3)):
            when = days[0]
            store.add_release(
                ReleaseRecord(rid, "web", f"/r/{rid}", "d" + rid, "s" + rid, when, "me", sha, when)
            )
        deploys = [  # (id, status, release, previous, start, minutes)
            ("d1", SUCCEEDED, "r1", None, days[0] + timedelta(hours=2), 5),
            ("d2", ROLLED_BACK, "r3", "r1", days[2], 3),
            ("d3", SUCCEEDED, "r3", "r1", days[2] + timedelta(hours=1), 5),
        ]
        for did, status, new, old, start, minutes in deploys:
            store.create_deployment(
                DeploymentRecord(
                    did,
                    "production",
                    "deploy",
                    "running",
                    "rolling",
                    {"web": new},
                    {"web": old} if old else {},
                    "me",
                    None,
                    start,
                )
            )
            end = start + timedelta(minutes=minutes)  # as if it took `minutes`
            monkeypatch.setattr(repository, "_now", lambda end=end: end)
            store.update_deployment(did, status=status, finished=True)

    env = {**os.environ, "CONVEYOR_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "dora", "--json"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["environment"] == "production"  # the default
    assert data["deployment_frequency"]["deployments"] == 2
    # d1: c1 2h05m; d3 brought c2 (1 day 1h05m) and c3 (1 day 0h05m): git found c2.
    assert data["lead_time"]["commits"] == 3
    assert data["lead_time"]["median_seconds"] == 86400 + 300
    assert data["change_failure_rate"]["failed"] == 1
    assert data["change_failure_rate"]["deployments"] == 3
    assert data["time_to_restore"]["median_seconds"] == 180

    human = subprocess.run(
        [sys.executable, "-m", "conveyor", "dora", "production"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert human.returncode == 0, human.stderr
    assert "change failure rate" in human.stdout and "1 of 3 deployments" in human.stdout

    bad = subprocess.run(
        [sys.executable, "-m", "conveyor", "dora", "--since", "soon"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert '--since "soon": expected a span like 30d' in bad.stderr
