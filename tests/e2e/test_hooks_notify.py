"""End to end: hooks around deploys of the shop, and what webhook and GitHub are told."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_shop import build, change_api, get_json, status, url
from tests.support.project import Project, free_port
from tests.support.receiver import Receiver

pytestmark = pytest.mark.slow

DUMP_ENV = (
    "import json, os, sys; json.dump({k: v for k, v in os.environ.items() "
    "if k.startswith('CONVEYOR_')}, open(sys.argv[1], 'w'))"
)


def dump_env(path: Path) -> list[str]:
    """A hook that writes the CONVEYOR_* variables it was given to `path`."""
    return [sys.executable, "-c", DUMP_ENV, str(path)]


def read(path: Path) -> dict[str, str]:
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


def last(shop: Project) -> dict[str, Any]:
    history = shop.json("history", "staging", "-n", "1")
    assert isinstance(history, list)
    return dict(history[0])


def test_hooks_and_notifications_follow_each_deploy(
    shop: Project, http: Receiver, tmp_path: Path
) -> None:
    shop.configure_top(
        hooks={"pre_deploy": [dump_env(tmp_path / "pre.json")]},
        notify=[
            {"webhook": {"url": f"{http.base}/deploys", "secret": "whsec"}},
            {"github": {"repository": "acme/shop", "token": "ghp_t", "api_url": http.base}},
        ],
    )
    shop.configure_top(
        environments={
            **_environments(shop),
            "staging": {
                **_environments(shop)["staging"],
                "hooks": {"post_deploy": [dump_env(tmp_path / "post.json")]},
            },
        }
    )
    v1 = build(shop)
    shop.run("deploy", "staging")
    pre, post = read(tmp_path / "pre.json"), read(tmp_path / "post.json")
    first = last(shop)
    assert pre["CONVEYOR_ENV"] == "staging" and pre["CONVEYOR_DEPLOYMENT"] == first["id"]
    assert pre["CONVEYOR_RELEASE_API"] == v1["api"] and pre["CONVEYOR_STATUS"] == "running"
    assert pre["CONVEYOR_RELEASES"] == f"api={v1['api']} web={v1['web']}"
    assert post["CONVEYOR_STATUS"] == "succeeded" and post["CONVEYOR_USER"] == "tester@example.com"

    change_api(shop, "v2")
    v2 = build(shop)
    shop.run("deploy", "staging")
    second = last(shop)
    assert read(tmp_path / "post.json")["CONVEYOR_PREVIOUS_RELEASE_API"] == v1["api"]

    hooks = [r.json() for r in http.received if r.path == "/deploys"]
    assert [(h["event"], h["deployment"]) for h in hooks] == [
        ("started", first["id"]),
        ("succeeded", first["id"]),
        ("started", second["id"]),
        ("succeeded", second["id"]),
    ]
    assert hooks[3]["releases"]["api"] == v2["api"] and hooks[3]["previous"]["api"] == v1["api"]
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=shop.root, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert hooks[3]["commits"]["api"] == commit
    github = [
        (r.path.removeprefix("/repos/acme/shop"), r.json().get("state"))
        for r in http.received
        if r.path.startswith("/repos/")
    ]
    assert github == [
        ("/deployments", None),
        ("/deployments/101/statuses", "in_progress"),
        ("/deployments/101/statuses", "success"),
        ("/deployments", None),
        ("/deployments/102/statuses", "in_progress"),
        ("/deployments/102/statuses", "success"),
        ("/deployments/101/statuses", "inactive"),
    ]
    delivered = last(shop)["notifications"]
    assert {(n["target"], n["event"], n["status"]) for n in delivered} == {
        (f"webhook {http.base}", "started", "delivered"),
        (f"webhook {http.base}", "succeeded", "delivered"),
        ("github acme/shop", "started", "delivered"),
        ("github acme/shop", "succeeded", "delivered"),
    }


def _environments(shop: Project) -> dict[str, Any]:
    import yaml

    config = yaml.safe_load((shop.root / "conveyor.yml").read_text())
    environments = config["environments"]
    assert isinstance(environments, dict)
    return environments


def test_a_failing_pre_deploy_hook_stops_the_deploy_before_anything_changes(
    shop: Project, http: Receiver, tmp_path: Path
) -> None:
    v1 = build(shop)
    shop.run("deploy", "staging")
    shop.configure_top(
        hooks={
            "pre_deploy": [["sh", "-c", "echo 'the release train is closed' >&2; exit 3"]],
            "on_failure": [dump_env(tmp_path / "failure.json")],
        },
        notify=[{"webhook": {"url": f"{http.base}/deploys"}, "events": ["refused"]}],
    )
    change_api(shop, "v2")
    build(shop)
    refused = shop.run("deploy", "staging", check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "hook pre_deploy `sh -c echo 'the release train is closed' >&2; exit 3` exited 3" in (
        refused.stderr
    )
    assert "nothing was changed" in refused.stderr
    assert get_json(url(shop))["release"] == v1["api"]
    assert "was refused: step 2 (run the pre_deploy hooks) failed" in refused.stderr
    record = last(shop)  # refused by a check, not rolled back: nothing had changed
    assert record["status"] == "refused" and "exited 3" in record["error"]
    log = (shop.home / "logs" / "deployments" / f"{record['id']}.log").read_text()
    assert "the release train is closed" in log
    failure = read(tmp_path / "failure.json")
    assert failure["CONVEYOR_STATUS"] == "refused" and "exited 3" in failure["CONVEYOR_ERROR"]
    (told,) = [r.json() for r in http.received]
    assert told["event"] == "refused" and told["deployment"] == record["id"]
    assert told["status"] == "refused" and "exited 3" in told["error"]
    explained = shop.run("explain", record["id"]).stdout
    assert "run the pre_deploy hooks: failed" in explained
    assert "conclusion: refused before anything changed: step 2" in explained
    steps = shop.json("explain", record["id"])
    assert isinstance(steps, dict)
    assert [s["kind"] for s in steps["steps"]] == ["verify_release", "hook"]  # no restore
    table = shop.run("history", "staging").stdout
    assert f"{record['id']}  deploy  refused" in table
    assert status(shop)["last_deployment"]["status"] == "refused"


def test_failed_hooks_and_deliveries_after_a_deploy_are_reported_not_fatal(
    shop: Project,
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/deploys"
    shop.configure_top(
        hooks={"post_deploy": [["sh", "-c", "exit 7"]]},
        notify=[{"webhook": {"url": nowhere, "timeout": "1s"}, "events": ["succeeded"]}],
    )
    v1 = build(shop)
    deployed = shop.run("deploy", "staging")
    assert "warning: hook post_deploy `sh -c exit 7` exited 7" in deployed.stderr
    assert get_json(url(shop))["release"] == v1["api"]
    record = last(shop)
    assert record["status"] == "succeeded"
    (note,) = record["notifications"]
    assert note["status"] == "failed" and note["attempts"] == 4
    assert note["error"].startswith(f"POST http://127.0.0.1:{nowhere.split(':')[2].split('/')[0]}")
    shown = shop.run("history", "staging").stdout
    assert f"{record['id']}: hook post_deploy `sh -c exit 7` exited 7" in shown
    assert f"{record['id']}: succeeded not delivered to webhook" in shown
    assert "after 4 attempts" in shown
