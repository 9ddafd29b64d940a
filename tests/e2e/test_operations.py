"""End to end: crash restarts, logs, locks, down and prune on a real shop."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
import urllib.request

import pytest

from tests.e2e.test_shop import assert_serving, build, change_api, service, status, url
from tests.support.load import traffic
from tests.support.project import CONVEYOR, Project

pytestmark = pytest.mark.slow


def test_crashed_instance_is_restarted_and_shown(shop: Project) -> None:
    build(shop)
    shop.run("deploy", "staging")
    victim = service(status(shop), "api")["instances"][0]
    os.kill(victim["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        inst = next(
            i for i in service(status(shop), "api")["instances"] if i["name"] == victim["name"]
        )
        if inst["restarts"] >= 1 and inst["process"] == "running":
            break
        time.sleep(0.3)
    assert inst["restarts"] >= 1 and inst["pid"] != victim["pid"], inst
    human = shop.run("status", "staging").stdout
    assert "restarts=1" in human


def test_slow_boot_gets_traffic_only_once_healthy(shop: Project) -> None:
    build(shop)
    shop.run("deploy", "staging")
    shop.write_faults(boot_delay_s=2)
    change_api(shop, "slow boot")
    slow = build(shop)
    with traffic(url(shop), clients=3) as load:
        shop.run("deploy", "staging", "-r", f"api={slow['api']}")
        result = load.stop()
    assert result.failures == 0, result.summary()
    assert_serving(shop, slow["api"])


def test_logs_lock_down_and_prune(shop: Project) -> None:
    first = build(shop)
    shop.run("deploy", "staging")
    logs = shop.run("logs", "staging", "api", "-n", "5").stdout.splitlines()
    names = {i["name"] for i in service(status(shop), "api")["instances"]}
    assert logs and {line.split(" | ")[0] for line in logs} <= names
    follow = subprocess.Popen(
        [*CONVEYOR, "logs", "staging", "api", "-f", "-n", "0"],
        cwd=shop.root,
        env=shop.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follow.stdout is not None
        line = ""
        deadline = time.monotonic() + 20
        while not line and time.monotonic() < deadline:
            # Until `logs -f` is up, its starting offset may already be past our request.
            urllib.request.urlopen(url(shop, "/api/counter"), timeout=10).read()
            if select.select([follow.stdout], [], [], 0.5)[0]:
                line = follow.stdout.readline()
        assert line.split(" | ")[0] in names and "/api/counter" in line, line
    finally:
        follow.terminate()
        follow.wait(10)

    shop.run("lock", "acquire", "staging", "-m", "freeze for the demo")
    refused = shop.run("deploy", "staging", "--build", check=False)
    assert refused.returncode == 1 and "freeze for the demo" in refused.stderr
    shop.run("lock", "release", "staging")

    for n in range(3):
        change_api(shop, f"v{n + 2}")
        build(shop)
    latest = shop.json("releases", "api")
    assert isinstance(latest, list) and len(latest) == 4
    shop.run("prune", "--keep", "2", "--yes")
    kept = {r["id"] for r in shop.json("releases", "api")}  # type: ignore[union-attr]
    # The newest build and the one staging runs; the never-deployed ones went.
    assert kept == {latest[0]["id"], first["api"]}

    shop.run("down", "staging", "--yes")
    env = status(shop)
    assert all(not s["instances"] and s["release"] is None for s in env["services"])
    history = shop.json("history", "staging")
    assert history[0]["kind"] == "down" and history[0]["status"] == "succeeded"  # type: ignore[index]
    shop.run("rollback", "staging")
    assert_serving(shop, first["api"])


def test_pruning_keeps_the_rollback_target_and_drops_never_deployed_releases(
    shop: Project,
) -> None:
    """Regression: prune deleted staging's previous good release (the rollback target)
    while it kept releases that never deployed; `rollback` then failed."""
    shop.configure_top(releases={"keep": 2})
    first = build(shop)
    shop.run("deploy", "staging")
    change_api(shop, "v2")
    second = build(shop)
    deployed = shop.run("deploy", "staging")
    never = []
    for n in range(3):
        change_api(shop, f"never deployed {n}")
        never.append(build(shop)["api"])
    shop.run("prune", "--yes")
    kept = {r["id"] for r in shop.json("releases", "api")}  # type: ignore[union-attr]
    assert kept == {never[-1], second["api"], first["api"]}, deployed.stdout
    shop.run("rollback", "staging")
    assert_serving(shop, first["api"])

    # the same rule applies by itself after every successful deploy: staging now runs
    # v3 and would roll back to the first release; v2 and the never-deployed one go
    change_api(shop, "v3")
    third = build(shop)
    deployed = shop.run("deploy", "staging")
    kept = {r["id"] for r in shop.json("releases", "api")}  # type: ignore[union-attr]
    assert kept == {third["api"], first["api"]}
    assert "pruned 2 old releases" in deployed.stdout + deployed.stderr


def test_a_release_modified_on_disk_is_refused_before_anything_changes(shop: Project) -> None:
    """Regression: the digest re-check was an invisible pre-step; it is the plan's first step,
    and a modified release is refused (nothing changed) with the files that changed."""
    first = build(shop)
    shop.run("deploy", "staging")
    change_api(shop, "v2")
    second = build(shop)
    tree = next(r["path"] for r in shop.json("releases", "api") if r["id"] == second["api"])  # type: ignore[index, union-attr]
    os.chmod(tree, 0o755)
    with open(os.path.join(tree, "server.py"), "a") as handle:
        handle.write("# changed on the server\n")
    refused = shop.run("deploy", "staging", check=False)
    assert refused.returncode == 1
    assert "modified: server.py" in refused.stderr
    assert "conveyor build" in refused.stderr  # the way out
    (record,) = shop.json("history", "staging", "-n", "1")  # type: ignore[misc]
    assert record["status"] == "refused"
    assert_serving(shop, first["api"])
