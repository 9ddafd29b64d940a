"""End to end on two SSH test hosts: Redis as an accessory on host2, a service on host1
that reaches it through host2's address (`${accessories.redis.host}` and `.port`)."""

from __future__ import annotations

import json
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_accessories import APP
from tests.support.project import Project, free_port, git_project
from tests.support.testhosts import Inventory, hosts_up

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inventory]:
    with hosts_up(2, tmp_path_factory.mktemp("testhosts") / "hosts") as inventory:
        yield inventory


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, hosts: Inventory) -> Iterator[Project]:
    tmp = tmp_path_factory.mktemp("fleet-accessories")
    root = tmp / "facc"
    root.mkdir()
    (root / "app.py").write_text(APP)
    listen = f"127.0.0.1:{free_port()}"
    (root / "conveyor.yml").write_text(
        textwrap.dedent(
            f"""\
            project: facc
            ports: "21000-21999"
            accessories:
              redis:
                run: [redis-server, --bind, $HOST, --port, $PORT, --dir, $DATA_DIR,
                      --appendonly, "yes", --protected-mode, "no"]
                host: host2
            services:
              web:
                run: [python3, app.py]
                env: {{REDIS_URL: "redis://${{accessories.redis.host}}:${{accessories.redis.port}}/0"}}
                roles: [app]
                health: {{type: http, path: /health, interval: 200ms}}
            environments:
              fleet:
                listen: {listen}
                target: ssh
                hosts:
                  - {{name: host1, address: "{hosts.hosts[0]["address"]}", user: {hosts.hosts[0]["user"]},
                     identity: "{hosts.identity}", roles: [app]}}
                  - {{name: host2, address: "{hosts.hosts[1]["address"]}", user: {hosts.hosts[1]["user"]},
                     identity: "{hosts.identity}", roles: [db]}}
            """
        )
    )
    shop = git_project(root, tmp / "home")
    shop.run("hosts", "trust", "fleet", "--yes")
    shop.run("setup", "fleet")
    try:
        yield shop
    finally:
        shop.run("accessory", "stop", "fleet", "redis", check=False)
        shop.run("down", "fleet", "--yes", check=False)
        shop.shutdown()


def _get(listen: str, path: str) -> str:
    with urllib.request.urlopen(f"http://{listen}{path}", timeout=10) as answer:
        return str(answer.read().decode())


def test_redis_on_host2_serves_the_app_on_host1(project: Project, hosts: Inventory) -> None:
    host2 = hosts.hosts[1]
    done = project.run("deploy", "fleet", "--build", timeout=600)
    assert "start accessory redis on host2" in done.stderr
    listed = project.json("accessory", "list", "fleet")["accessories"]  # type: ignore[index]
    (redis,) = listed
    assert (redis["host"], redis["process"]) == ("host2", "running")
    assert redis["address"] == f"{host2['address']}:{redis['port']}"
    assert 21000 <= redis["port"] <= 21999

    status = json.loads(project.run("status", "fleet", "--json").stdout)["environments"][0]
    (web,) = status["services"]
    assert [i["host"] for i in web["instances"]] == ["host1"]
    assert status["accessories"][0]["process"] == "running"
    listen = status["listen"]
    # The app on host1 writes and reads through host2's address.
    assert _get(listen, "/set?k=fleet&v=ok") == "OK"
    assert _get(listen, "/get?k=fleet") == "ok"
    # Its data directory and program are host2's; the stray check leaves it alone.
    data = Path(f"/home/{host2['user']}/.conveyor/facc/data/fleet/redis")
    assert (data / "appendonlydir").is_dir()
    pid = redis["pid"]

    app = project.root / "app.py"
    app.write_text(app.read_text().replace('VERSION = "v1"', 'VERSION = "v2"'))
    project.commit("v2")
    again = project.run("deploy", "fleet", "--build", timeout=600)
    assert "accessory" not in again.stderr
    assert _get(listen, "/version") == "v2"
    assert _get(listen, "/get?k=fleet") == "ok"
    listed = project.json("accessory", "list", "fleet")["accessories"]  # type: ignore[index]
    assert listed[0]["pid"] == pid

    logs = project.run("accessory", "logs", "fleet", "redis", "-n", "50").stdout
    assert "Ready to accept connections" in logs
    project.run("accessory", "restart", "fleet", "redis")
    assert _get(listen, "/get?k=fleet") == "ok"  # kept in its data directory on host2
    stopped = project.run("accessory", "stop", "fleet", "redis")
    assert "stopped accessory redis" in stopped.stdout
    status = json.loads(project.run("status", "fleet", "--json").stdout)["environments"][0]
    assert status["accessories"][0]["process"] == "stopped"
