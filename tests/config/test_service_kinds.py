"""Workers, singletons, `after:` and a service's own strategy: the config rules and the pure
choices made from them (kind, order, strategy, min_ready, a worker's plan)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conveyor.config import load_config
from conveyor.config.kinds import (
    SINGLETON,
    WEB,
    WORKER,
    WORKER_MIN_READY,
    ordered_services,
    service_kind,
    service_order,
)
from conveyor.config.models import Config, StrategyConfig
from conveyor.engine.plan import DrainInstances, SetWeights, StartInstances, StopInstances
from conveyor.engine.strategies import ObservedInstance, ServiceGoal, plan_service
from conveyor.engine.strategies.choice import min_ready, service_strategy, without_traffic
from conveyor.errors import ConfigError

ENVIRONMENTS = """\
environments:
  staging: {listen: "127.0.0.1:8080"}
  production:
    listen: "127.0.0.1:8090"
    strategy: {type: canary, steps: [{set_weight: 10}]}
"""

CELERY = """\
services:
  worker: {run: celery worker, after: [web], stop_timeout: 10m}
  beat: {run: celery beat, singleton: true, after: [web]}
  web: {run: gunicorn}
"""


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "conveyor.yml"
    path.write_text("project: shop\n" + text, encoding="utf-8")
    return load_config(path, environ={}).config


def issues_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return caught.value.issues


def test_web_gets_the_default_route_the_others_are_workers(tmp_path: Path) -> None:
    config = load(tmp_path, CELERY + ENVIRONMENTS)
    kinds = {name: service_kind(svc) for name, svc in config.services.items()}
    assert kinds == {"worker": WORKER, "beat": SINGLETON, "web": WEB}
    web, worker = config.services["web"], config.services["worker"]
    assert web.route is not None and web.route.path == "/"
    assert web.health is not None and web.health.type == "tcp"
    assert worker.route is None and worker.health is None  # no port: its process is its check
    assert (worker.stop_signal, worker.stop_timeout) == ("TERM", 600.0)


def test_the_only_service_gets_the_default_route_whatever_its_name(tmp_path: Path) -> None:
    config = load(tmp_path, "services:\n  shop: {run: x}\n" + ENVIRONMENTS)
    assert service_kind(config.services["shop"]) == WEB


def test_without_a_web_service_those_without_route_are_workers(tmp_path: Path) -> None:
    # Before workers, two services without a route were refused ("same route as ...").
    text = "services:\n  api: {run: x, route: {path: /api}}\n  jobs: {run: y}\n  mail: {run: z}\n"
    config = load(tmp_path, text + ENVIRONMENTS)
    kinds = {name: service_kind(svc) for name, svc in config.services.items()}
    assert kinds == {"api": WEB, "jobs": WORKER, "mail": WORKER}


def test_a_route_makes_any_service_receive_requests(tmp_path: Path) -> None:
    text = "services:\n  web: {run: x, route: {path: /app}}\n  front: {run: y, route: {path: /}}\n"
    config = load(tmp_path, text + ENVIRONMENTS)
    assert {service_kind(s) for s in config.services.values()} == {WEB}


def test_a_worker_with_a_check_that_needs_a_port_is_refused_with_a_hint(tmp_path: Path) -> None:
    text = """\
    services:
      web: {run: x}
      jobs: {run: y, health: {type: http, path: /health}}
      mail: {run: z, health: {type: tcp}}
      ok: {run: z, health: {type: command, command: "celery inspect ping"}}
    """
    issues = issues_of(tmp_path, textwrap.dedent(text) + ENVIRONMENTS)
    assert len(issues) == 2
    assert issues[0].startswith(
        "services/jobs/health: jobs has no route: it is a worker (no port, no requests), "
        "so a http check has nothing to reach"
    )
    assert "give it a route: (like route: {path: /jobs}) to receive requests" in issues[0]
    assert issues[1].startswith("services/mail/health: mail has no route: it is a worker")


def test_a_worker_has_no_smoke_tests_and_no_traffic_to_split(tmp_path: Path) -> None:
    text = """\
    services:
      web: {run: x}
      jobs:
        run: y
        smoke: [{path: /}]
        strategy: {type: canary, steps: [{set_weight: 5}]}
    """
    issues = issues_of(tmp_path, textwrap.dedent(text) + ENVIRONMENTS)
    assert [i.split(":")[0] for i in issues] == ["services/jobs/smoke", "services/jobs/strategy"]
    assert (
        "there is no traffic for canary to split; use rolling, immediate or recreate" in (issues[1])
    )


def test_a_singleton_runs_one_instance_and_never_another_strategy(tmp_path: Path) -> None:
    text = """\
    services:
      web: {run: x}
      beat: {run: y, singleton: true, replicas: 2, strategy: rolling}
    environments:
      staging:
        listen: "127.0.0.1:8080"
        services: {beat: {replicas: 3}}
    """
    assert issues_of(tmp_path, textwrap.dedent(text)) == [
        "services/beat/replicas: beat is a singleton (singleton: true), which runs exactly one "
        "instance; got 2",
        "environments/staging/services/beat/replicas: beat is a singleton (singleton: true), "
        "which runs exactly one instance; got 3",
        "services/beat/strategy: beat is a singleton: its old instance always stops before the "
        "new one starts (recreate), never rolling; remove strategy",
    ]


def test_after_names_known_services_without_a_circle(tmp_path: Path) -> None:
    text = """\
    services:
      web: {run: x, after: [web]}
      a: {run: y, after: [b, nope]}
      b: {run: z, after: [a]}
    """
    assert issues_of(tmp_path, textwrap.dedent(text) + ENVIRONMENTS) == [
        "services/web/after: a service cannot come after itself",
        'services/a/after: unknown service "nope" (services are: web, a, b)',
        "services/a/after: the after: lists go round in a circle (a after b after a), so no "
        "service could be deployed first",
    ]


def test_a_service_strategy_follows_the_rolling_rules(tmp_path: Path) -> None:
    text = """\
    services:
      web: {run: x}
      jobs: {run: y, strategy: {max_surge: 0, max_unavailable: 0}}
      mail: {run: z, strategy: {batch: 1}}
    """
    issues = issues_of(tmp_path, textwrap.dedent(text) + ENVIRONMENTS)
    assert issues[0].startswith("services/jobs/strategy: max_surge and max_unavailable are both 0")
    assert issues[1].startswith(
        "services/mail/strategy/batch: batches are of hosts, and only `target: ssh` runs on hosts"
    )


def test_order_puts_each_service_after_those_it_names() -> None:
    assert service_order({"worker": ["web"], "beat": ["web"], "web": []}) == [
        "web",
        "worker",
        "beat",
    ]
    assert service_order({"a": [], "b": [], "c": []}) == ["a", "b", "c"]  # the file's order
    assert service_order({"front": ["api"], "api": ["db"], "db": []}) == ["db", "api", "front"]
    assert service_order({"a": ["gone"]}) == ["a"]  # unknown names are the rules' business
    with pytest.raises(ValueError, match="circle"):
        service_order({"a": ["b"], "b": ["a"]})


def test_order_of_a_config(tmp_path: Path) -> None:
    assert ordered_services(load(tmp_path, CELERY + ENVIRONMENTS)) == ["web", "worker", "beat"]


def test_each_service_gets_its_own_strategy(tmp_path: Path) -> None:
    text = """\
    services:
      web: {run: x}
      jobs: {run: y}
      mail: {run: z, strategy: {type: immediate, min_ready: 5s}}
      beat: {run: b, singleton: true}
    """
    config = load(tmp_path, textwrap.dedent(text) + ENVIRONMENTS)

    def chosen(env: str, service: str) -> str:
        return service_strategy(config, env, service).type

    assert [chosen("production", s) for s in ("web", "jobs", "mail", "beat")] == [
        "canary",  # the environment's
        "rolling",  # a worker has no traffic to split: it rolls
        "immediate",  # its own
        "recreate",  # a singleton, always
    ]
    assert [chosen("staging", s) for s in ("web", "jobs", "beat")] == [
        "rolling",
        "rolling",
        "recreate",
    ]
    # A worker that says nothing runs WORKER_MIN_READY before it counts; a given one wins.
    assert min_ready(config, "staging", "web") == 0.0
    assert min_ready(config, "production", "jobs") == WORKER_MIN_READY
    assert min_ready(config, "staging", "beat") == WORKER_MIN_READY
    assert min_ready(config, "staging", "mail") == 5.0


def test_a_workers_rolling_plan_has_no_weights_and_no_drain() -> None:
    old = (ObservedInstance("w-old-1", "r1", True), ObservedInstance("w-old-2", "r1", True))
    goal = ServiceGoal("jobs", "r2", 2, old, name_prefix="w-new")
    steps = without_traffic(plan_service("rolling", goal))
    assert not [s for s in steps if isinstance(s, SetWeights | DrainInstances)]
    kinds = [(type(s).__name__, getattr(s, "instances", ())) for s in steps]
    # One new worker runs beside the old ones (surge 1) before an old one stops.
    assert kinds[:4] == [
        ("StartInstances", ("w-new-1",)),
        ("WaitHealthy", ("w-new-1",)),
        ("StopInstances", ("w-old-1",)),
        ("StartInstances", ("w-new-2",)),
    ]
    assert isinstance(steps[2], StopInstances) and isinstance(steps[3], StartInstances)


def test_workers_roll_host_by_host_on_a_fleet() -> None:
    old = tuple(
        ObservedInstance(name, "r1", True, host=host)
        for name, host in (("a", "h1"), ("b", "h2"), ("c", "h3"))
    )
    goal = ServiceGoal("jobs", "r2", 3, old, name_prefix="new", hosts=("h1", "h2", "h3"))
    steps = without_traffic(plan_service(StrategyConfig(type="rolling", batch=1), goal))
    assert [(s.kind, getattr(s, "hosts", ()) or getattr(s, "instances", ())) for s in steps] == [
        ("start", ("h1",)),
        ("wait_healthy", ("new-1",)),
        ("stop", ("a",)),
        ("start", ("h2",)),
        ("wait_healthy", ("new-2",)),
        ("stop", ("b",)),
        ("start", ("h3",)),
        ("wait_healthy", ("new-3",)),
        ("stop", ("c",)),
        ("mark_current", ()),
    ]
