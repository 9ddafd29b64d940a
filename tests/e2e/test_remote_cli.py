"""End to end, the CLI acting on a real `conveyor server` (`--server URL`, the token in
CONVEYOR_TOKEN): the same commands print what they print on the server's machine, a
deploy and a rollback run on the server, an approval comes from an approver's token,
and a viewer's token, a revoked token and an unreachable server get clear errors with
the local exit codes.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.apps import SERVER, make_app
from tests.support.dashboard import answers, call, wait_for
from tests.support.project import Project, free_port

pytestmark = pytest.mark.slow

CONFIG = """\
project: api
services:
  web:
    run: [python3, server.py, --port, $PORT]
    route: {path: /}
    health: {type: http, path: /health, interval: 100ms}
environments:
  staging:
    listen: ${LISTEN}
  production:
    listen: ${LISTEN_PRODUCTION}
    approvals: {required: 1}
"""


@dataclass
class Served:
    project: Project
    url: str
    tokens: dict[str, str]
    deployment: str = ""  # staging's first deployment, through the server

    def api(self, path: str) -> Any:
        """GET `path` of the API as the viewer (the checks, without starting a CLI)."""
        status, body = call(self.url, "GET", path, self.tokens["dash"])
        assert status == 200, body
        return body

    def remote(
        self, *args: str, as_token: str = "ci", check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`conveyor --server URL ARGS` with the token of `as_token` in CONVEYOR_TOKEN."""
        env = {"CONVEYOR_TOKEN": self.tokens[as_token]}
        return self.project.run("--server", self.url, *args, env=env, check=check)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    project = make_app(tmp_path_factory.mktemp("remote"), CONFIG, {"server.py": SERVER})
    project.env["LISTEN_PRODUCTION"] = f"127.0.0.1:{free_port()}"
    port = free_port()
    server = project.start("server", "--listen", f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            "the server to answer /healthz",
            lambda: server.poll() is None and answers(url + "/healthz"),
        )
        project.run("build")
        names = {"ci": "deployer", "alice": "approver", "dash": "viewer", "root": "admin"}
        yield Served(project, url, made(project, names))
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        project.shutdown()


def made(project: Project, roles: dict[str, str]) -> dict[str, str]:
    """A token of each name and role, written to the project's store as `conveyor tokens
    create` writes them (one CLI start saved per token; tests/e2e/test_server.py runs it)."""
    from datetime import UTC, datetime

    from conveyor.paths import Paths
    from conveyor.server import tokens
    from conveyor.store import open_store
    from conveyor.store.records import TokenRecord

    store = open_store(f"sqlite:///{Paths(project.home).ensure().state_db}")
    made: dict[str, str] = {}
    try:
        for name, role in roles.items():
            made[name] = tokens.new_token()
            record = TokenRecord(
                name=name,
                role=role,
                token_hash=tokens.token_hash(made[name]),
                created_at=datetime.now(UTC),
                created_by="tester@example.com",
            )
            store.add_token(record)
    finally:
        store.close()
    return made


def test_a_deploy_through_the_server_prints_what_a_local_deploy_prints(served: Served) -> None:
    deployed = served.remote("deploy", "staging", "-m", "from a laptop")
    history = served.api("/api/environments/staging/deployments")
    assert history[0]["user"] == "ci" and history[0]["reason"] == "from a laptop"
    first, url = deployed.stdout.splitlines()
    release = history[0]["releases"]["web"]
    assert first == f"deploy {history[0]['id']} succeeded: web {release}"
    assert url.strip() == f"http://{served.project.env['LISTEN']}"
    assert "[web] start" in deployed.stderr  # the step lines, as a local deploy prints them
    served.deployment = history[0]["id"]


def test_reading_commands_print_the_same_here_and_through_the_server(served: Served) -> None:
    ensure_deployed(served)
    # Both reads must see the same state: wait until supervisord no longer says an
    # instance is starting (it does for a moment after its health check passed).
    wait_for(
        "every instance running",
        lambda: re.search(r"process=(?!running)", served.project.run("status").stdout) is None,
    )
    for command in (["status"], ["history", "staging"], ["audit"]):
        for options in ([], ["--json"]):
            local = served.project.run(*command, *options)
            remote = served.remote(*command, *options, as_token="root")
            assert remote.stdout == local.stdout, command + options
            assert local.stdout.strip()


def test_explain_and_dora_print_the_same_here_and_through_the_server(served: Served) -> None:
    deployment = ensure_deployed(served)
    for options in ([], ["--json"]):
        local = served.project.run("explain", deployment, *options)
        assert (
            served.remote("explain", deployment, *options, as_token="dash").stdout == local.stdout
        )
    local_dora = served.project.json("dora", "staging")
    remote_dora = json.loads(served.remote("dora", "staging", "--json", as_token="dash").stdout)
    for report in (local_dora, remote_dora):  # `until` is now: a moment apart
        assert isinstance(report, dict)
        del report["since"], report["until"]
    assert remote_dora == local_dora
    assert remote_dora["deployment_frequency"]["deployments"] >= 1
    local_text = served.project.run("dora", "staging").stdout.splitlines()
    remote_text = served.remote("dora", "staging", as_token="dash").stdout.splitlines()
    assert remote_text[0].startswith("DORA metrics of staging, ")
    assert remote_text[1:] == local_text[1:]


def test_rollback_through_the_server(served: Served) -> None:
    ensure_deployed(served)
    before = served.api("/api/environments/staging")["environments"][0]["services"][0]
    (served.project.root / "VERSION").write_text("2\n")
    served.project.commit("v2")
    served.project.run("build")
    served.remote("deploy", "staging")
    rolled = served.remote("rollback", "staging", "--json")
    record = json.loads(rolled.stdout)
    assert record["kind"] == "rollback" and record["status"] == "succeeded"
    assert record["releases"] == {"web": before["release"]} and record["user"] == "ci"
    assert rolled.stderr == ""  # --json: no step lines, as locally


def test_a_viewer_token_is_refused_with_a_message_and_exit_1(served: Served) -> None:
    refused = served.remote("deploy", "staging", as_token="dash", check=False)
    assert refused.returncode == 1, refused.stderr
    assert "forbidden: token dash (viewer) may not deploy" in refused.stderr
    assert served.url in refused.stderr and "hint:" in refused.stderr
    assert "Traceback" not in refused.stderr and refused.stdout == ""


def test_approve_through_the_server_and_ctrl_c_stops_only_the_following(served: Served) -> None:
    ensure_deployed(served)
    env = {"CONVEYOR_TOKEN": served.tokens["ci"]}
    follower = served.project.start("--server", served.url, "deploy", "production", env=env)

    def awaiting() -> Any:
        items = served.api("/api/environments/production/deployments")
        return items[0]["id"] if items and items[0]["status"] == "awaiting_approval" else None

    assert follower.stderr is not None
    seen = []
    for line in follower.stderr:  # the follower says what it waits for, then gets Ctrl-C
        seen.append(line)
        if "waiting for approval of" in line:
            break
    deployment = awaiting()
    assert deployment and f"conveyor approve {deployment}" in seen[-1], seen
    follower.send_signal(signal.SIGINT)
    _, err = follower.communicate(timeout=30)
    assert follower.returncode == 130, err
    assert f"stopped following {deployment}: it goes on on the server" in err
    assert awaiting() == deployment  # Ctrl-C stopped the following, not the deployment

    own = served.remote("approve", deployment, check=False)  # a deployer's token
    assert own.returncode == 1 and "forbidden: token ci (deployer) may not approve" in own.stderr
    approved = served.remote("approve", deployment, "-m", "looks good", as_token="alice")
    assert approved.stdout.startswith(f"{deployment}: approved")
    assert "the waiting deploy goes on" in approved.stdout

    def finished() -> Any:
        data = served.api(f"/api/deployments/{deployment}")
        return data if data["status"] not in ("awaiting_approval", "running") else None

    assert wait_for("the approved deploy to end", finished, timeout=90)["status"] == "succeeded"


def test_commands_that_need_the_servers_machine_are_refused(served: Served) -> None:
    for command in (["build"], ["tokens", "list"]):
        refused = served.remote(*command, check=False)
        assert refused.returncode == 2, refused.stderr
        assert "is not available through a server yet" in refused.stderr
        assert "run it on the server's machine" in refused.stderr
    through_env = served.project.run(
        "build", check=False, env={"CONVEYOR_SERVER": served.url, "CONVEYOR_TOKEN": "x"}
    )
    assert through_env.returncode == 2 and "unset CONVEYOR_SERVER" in through_env.stderr
    dry = served.remote("deploy", "staging", "--dry-run", check=False)
    assert dry.returncode == 2 and "--dry-run is not available through a server" in dry.stderr


def test_an_unreachable_server_a_missing_and_a_revoked_token(served: Served) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    env = {"CONVEYOR_TOKEN": served.tokens["dash"], "CONVEYOR_SERVER": nowhere}
    unreachable = served.project.run("status", check=False, env=env)
    assert unreachable.returncode == 1
    assert f"cannot reach conveyor server at {nowhere}: connection refused" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr

    missing = served.project.run("--server", served.url, "status", check=False)
    assert missing.returncode == 2 and "CONVEYOR_TOKEN is not set" in missing.stderr

    served.project.run("tokens", "revoke", "dash")  # the last test of the module to use it
    revoked = served.remote("status", as_token="dash", check=False)
    assert revoked.returncode == 1
    assert "the token in CONVEYOR_TOKEN was refused" in revoked.stderr
    assert served.url in revoked.stderr and "Traceback" not in revoked.stderr


def ensure_deployed(served: Served) -> str:
    """The id of staging's first deployment (deployed through the server when a test runs
    alone)."""
    if not served.deployment:
        served.remote("deploy", "staging")
        served.deployment = served.api("/api/environments/staging/deployments")[0]["id"]
    return served.deployment
