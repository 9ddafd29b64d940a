"""A small project and its API (the real FastAPI app, in process), with a token of
every role and of every kind that must be refused."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conveyor.paths import Paths
from conveyor.server import tokens
from conveyor.server.app import create_app
from conveyor.store import Store, open_store
from conveyor.store.records import SUCCEEDED, DeploymentRecord, TokenRecord
from tests.support.apps import SERVER, make_app
from tests.support.project import free_port

CONFIG = """\
project: api
services:
  web:
    run: [python3, server.py, --port, $PORT]
    route: {path: /}
    health: {type: http, path: /health, interval: 100ms}
environments:
  staging:
    listen: 127.0.0.1:%d
  production:
    listen: 127.0.0.1:%d
    approvals: {required: 1}
"""

NOW = datetime.now(UTC)
DEPLOYMENT = "20261206-120000-abcd"  # a finished deployment of staging


@dataclass
class Api:
    client: TestClient
    store: Store
    tokens: dict[str, str]  # kind -> the token to send ("" for none)
    root: Path

    def call(self, method: str, path: str, kind: str, body: object = None) -> tuple[int, object]:
        token = self.tokens[kind]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        answer = self.client.request(method, path, headers=headers, json=body)
        if not answer.headers.get("content-type", "").startswith("application/json"):
            return answer.status_code, answer.text  # the live stream of a deployment
        return answer.status_code, answer.json()


def _token(store: Store, name: str, role: str, **extra: object) -> str:
    secret = tokens.new_token()
    store.add_token(
        TokenRecord(
            name=name,
            role=role,
            token_hash=tokens.token_hash(secret),
            created_at=NOW,
            created_by="tester",
            **extra,  # type: ignore[arg-type]
        )
    )
    return secret


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    project = make_app(tmp_path, CONFIG % (free_port(), free_port()), {"server.py": SERVER})
    for key in ("CONVEYOR_HOME", "CONVEYOR_USER"):
        monkeypatch.setenv(key, project.env[key])
    monkeypatch.delenv("CONVEYOR_STATE_URL", raising=False)
    store = open_store(f"sqlite:///{Paths(project.home).ensure().state_db}")
    kinds = {
        role: _token(store, role, role) for role in ("viewer", "deployer", "approver", "admin")
    }
    kinds["other-environment"] = _token(store, "prod", "admin", environments=["production"])
    kinds["revoked"] = _token(store, "gone", "admin", revoked_at=NOW)
    kinds["expired"] = _token(store, "old", "admin", expires_at=NOW - timedelta(seconds=1))
    kinds["bad"] = tokens.new_token()
    kinds["none"] = ""
    store.create_deployment(
        DeploymentRecord(
            id=DEPLOYMENT,
            environment="staging",
            kind="deploy",
            status=SUCCEEDED,
            strategy="rolling",
            releases={"web": "r1"},
            previous={},
            user="tester@example.com",
            reason="first",
            started_at=NOW - timedelta(minutes=1),
            finished_at=NOW,
        )
    )
    app = create_app(project.root / "conveyor.yml")
    try:
        with TestClient(app) as client:
            yield Api(client, store, kinds, project.root)
    finally:
        store.close()
        app.state.control.store.close()
        project.shutdown()  # in case a test started supervisord


@pytest.fixture
def fuzz_schema(api: Api) -> object:
    """The OpenAPI document of the app of `api`, for schemathesis."""
    import schemathesis

    return schemathesis.openapi.from_asgi("/api/openapi.json", api.client.app)
