"""A small project and a state database written through the real `Store` API.

No process is started: supervisord is not running, so every instance reports
`process: unknown`. `CONVEYOR_HOME` points into the test's tmp directory.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor.paths import Paths
from conveyor.store import open_store
from conveyor.store.records import (
    RUNNING,
    STEP_DONE,
    STEP_RUNNING,
    SUCCEEDED,
    DeploymentRecord,
    InstanceRecord,
    LockRecord,
)

CONFIG = """\
project: demo
services:
  api:
    source: api
    run: [python3, server.py]
    replicas: 2
    route: {path: /api}
    health: {type: http, path: /health}
    env: {TOKEN: "${DEMO_TOKEN:-none}"}
  web:
    source: web
    run: [python3, server.py]
    route: {path: /}
environments:
  staging:
    listen: ${DEMO_STAGING_LISTEN:-127.0.0.1:18080}
    strategy: {type: rolling, max_surge: 1}
  production:
    listen: 127.0.0.1:18090
    url: https://demo.example.com
    strategy: immediate
    services:
      api: {replicas: 3}
"""

T0 = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


@dataclass
class StatusProject:
    root: Path
    home: Path
    env: dict[str, str]

    @property
    def config(self) -> Path:
        return self.root / "conveyor.yml"

    @property
    def paths(self) -> Paths:
        return Paths(self.home)

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "conveyor", *args],
            cwd=self.root,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def populate(url: str) -> None:
    """Staging: deployed, two instances per service, held by a manual lock.
    Production: a deployment interrupted at its second step (its process is gone)."""
    with open_store(url) as store:
        staging = DeploymentRecord(
            id="20260501-120000-aaaa",
            environment="staging",
            kind="deploy",
            status=RUNNING,
            strategy="rolling",
            releases={"api": "r-api-1", "web": "r-web-1"},
            previous={},
            user="alice@example.com",
            reason="first",
            started_at=T0,
            plan=[{"kind": "start"}, {"kind": "wait_healthy"}],
        )
        store.create_deployment(staging)
        store.step_started(staging.id, 1, "start", "start api")
        store.step_finished(staging.id, 1, STEP_DONE)
        store.update_deployment(staging.id, status=SUCCEEDED, finished=True)
        for service, release in staging.releases.items():
            store.set_current("staging", service, release, staging.id)
            for n in (2, 1):  # same creation time: ordered by name
                store.upsert_instance(
                    InstanceRecord(
                        name=f"staging-{service}-aaaa-{n}",
                        environment="staging",
                        service=service,
                        release_id=release,
                        port=20000 + n + (10 if service == "web" else 0),
                        host="local",
                        address=f"127.0.0.1:{20000 + n + (10 if service == 'web' else 0)}",
                        state="serving",
                        created_at=T0 + timedelta(seconds=1),
                        deployment_id=staging.id,
                    )
                )
        store.acquire_lock(
            LockRecord(
                environment="staging",
                holder="bob@example.com",
                acquired_at=T0 + timedelta(minutes=5),
                message="maintenance window",
            )
        )

        production = DeploymentRecord(
            id="20260501-130000-bbbb",
            environment="production",
            kind="deploy",
            status=RUNNING,
            strategy="immediate",
            releases={"api": "r-api-1"},
            previous={},
            user="carol@example.com",
            reason=None,
            started_at=T0 + timedelta(hours=1),
            plan=[{"kind": "start"}, {"kind": "wait_healthy"}, {"kind": "set_weights"}],
        )
        store.create_deployment(production)
        store.step_started(production.id, 1, "start", "start production-api-bbbb-1")
        store.step_finished(production.id, 1, STEP_DONE)
        store.step_started(production.id, 2, "wait_healthy", "wait until healthy")
        assert store.list_steps(production.id)[-1].status == STEP_RUNNING
        store.upsert_instance(
            InstanceRecord(
                name="production-api-bbbb-1",
                environment="production",
                service="api",
                release_id="r-api-1",
                port=21001,
                host="local",
                address="127.0.0.1:21001",
                state="starting",
                created_at=T0 + timedelta(hours=1),
                deployment_id=production.id,
            )
        )
        store.acquire_lock(
            LockRecord(
                environment="production",
                holder="carol@example.com",
                acquired_at=T0 + timedelta(hours=1),
                deployment_id=production.id,
                pid=_dead_pid(),
                hostname=socket.gethostname(),
            )
        )


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StatusProject]:
    """A project whose state database holds deployments, instances and locks."""
    root = tmp_path / "demo"
    root.mkdir()
    (root / "conveyor.yml").write_text(textwrap.dedent(CONFIG))
    home = tmp_path / "home"
    for name in ("CONVEYOR_STATE_URL", "CONVEYOR_FAILPOINTS", "DEMO_STAGING_LISTEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONVEYOR_HOME", str(home))
    monkeypatch.chdir(root)
    populate(f"sqlite:///{Paths(home).ensure().state_db}")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE",)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    yield StatusProject(root=root, home=home, env=env)
