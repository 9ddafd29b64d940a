"""Behaviour every `Router` must have, written once, run against every real router.

`test_conformance.py` imports these tests and provides the `harness`
fixture, parametrized over the routers (a real Caddy, a real HAProxy). A new
router gets the whole suite by adding a harness there. Tests here only use
the `Router` protocol and plain HTTP; what is specific to one router (its
config, its API, its files) is tested in that router's own test module.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from conveyor.analysis.metrics import Histogram
from conveyor.errors import RouterError
from conveyor.routers.base import Router, RouteSpec, TrafficStats
from tests.routers.conftest import Backend, free_port, run, wait_until, who


class RouterHarness(Protocol):
    """A started router process and how to get at it."""

    name: str
    router: Router
    # True when each weight change reloads the data plane (Caddy): idle
    # keep-alive connections may then be closed under a client's feet.
    reloads_on_weight_change: bool
    # "module.NAME" of the recent-window size behind p50/p95/p99, for monkeypatch
    traffic_window: str

    def fresh(self) -> Router:
        """A new router object on the same process and state (another Conveyor process)."""
        ...

    def restart(self) -> None:
        """Stop the router process and start it again with the same command line."""
        ...


@pytest.fixture
def router(harness: RouterHarness) -> Router:
    return harness.router


@pytest.fixture
def env(request: pytest.FixtureRequest, harness: RouterHarness) -> Iterator[str]:
    """An environment name unique to the test (in its router process); removed afterwards."""
    name = request.node.originalname.removeprefix("test_").replace("_", "-")[:40]
    yield name
    run(harness.router.remove_environment(name))


def listen_address() -> str:
    return f"127.0.0.1:{free_port()}"


async def serve(router: Router, env: str, service: str, weights: dict[str, int]) -> None:
    """Register each backend and set the weights."""
    for address in weights:
        await router.register(env, service, address)
    await router.set_weights(env, service, weights)


# -- Routing ----------------------------------------------------------------


def test_routes_by_prefix_and_host_longest_prefix_first_and_strips_prefix(
    router: Router, env: str, backends: Callable[[str], Backend]
) -> None:
    listen = listen_address()
    web, api, v2, admin = backends("web"), backends("api"), backends("v2"), backends("admin")
    routes = [
        RouteSpec("web", "/"),
        RouteSpec("api", "/api"),
        RouteSpec("v2", "/api/v2/", strip_prefix=True),
        RouteSpec("admin", "/", host="admin.example"),
    ]

    async def setup() -> None:
        await router.ensure_environment(env, listen, routes)
        for service, backend in [("web", web), ("api", api), ("v2", v2), ("admin", admin)]:
            await serve(router, env, service, {backend.address: 1})

    run(setup())
    with httpx.Client(base_url=f"http://{listen}") as client:
        seen = {path: client.get(path).json() for path in ["/api", "/api/x?q=1", "/apix", "/"]}
        assert {p: (s["name"], s["path"]) for p, s in seen.items()} == {
            "/api": ("api", "/api"),
            "/api/x?q=1": ("api", "/api/x?q=1"),
            "/apix": ("web", "/apix"),  # a prefix is a whole path segment
            "/": ("web", "/"),
        }
        stripped = client.get("/api/v2/users/7?page=2").json()
        assert (stripped["name"], stripped["path"]) == ("v2", "/users/7?page=2")
        assert client.get("/api/v2").json()["path"] == "/"
        by_host = client.get("/api", headers={"Host": "admin.example"}).json()
        assert by_host["name"] == "api"  # the longer prefix wins over the host
        by_host = client.get("/dashboard", headers={"Host": "admin.example"}).json()
        assert (by_host["name"], by_host["host"]) == ("admin", "admin.example")
        assert who(client.get("/dashboard", headers={"Host": "admin.example:8080"})) == "admin"
        assert who(client.get("/dashboard", headers={"Host": "other.example"})) == "web"


def test_unrouted_path_gets_404_and_no_backend_with_weight_gets_503(
    router: Router, env: str, backends: Callable[[str], Backend]
) -> None:
    listen = listen_address()
    run(router.ensure_environment(env, listen, [RouteSpec("api", "/api")]))
    with httpx.Client(base_url=f"http://{listen}") as client:
        missing = client.get("/elsewhere")
        assert missing.status_code == 404
        assert f"no route for this request in environment {env}" in missing.text

        empty = client.get("/api/x")
        assert empty.status_code == 503
        assert empty.text == "no healthy instance of api\n"
        assert empty.headers["content-type"].startswith("text/plain")

        a = backends("a")
        run(router.register(env, "api", a.address))
        assert run(router.weights(env, "api")) == {a.address: 0}
        assert client.get("/api/x").text == "no healthy instance of api\n"  # weight 0
        assert a.hits == {}

        run(router.set_weights(env, "api", {a.address: 1}))
        assert who(client.get("/api/x")) == "a"

        run(router.set_weights(env, "api", {a.address: 0}))
        assert client.get("/api/x").text == "no healthy instance of api\n"
        assert sum(a.hits.values()) == 1


# -- Weights ----------------------------------------------------------------


def test_weighted_split_is_accurate_and_weight_zero_gets_nothing(
    router: Router, env: str, backends: Callable[[str], Backend]
) -> None:
    listen = listen_address()
    a, b, idle = backends("a"), backends("b"), backends("idle")

    async def setup() -> None:
        await router.ensure_environment(env, listen, [RouteSpec("api")])
        await router.register(env, "api", idle.address)  # registered: weight 0
        await serve(router, env, "api", {a.address: 1, b.address: 3})

    run(setup())
    with httpx.Client(base_url=f"http://{listen}") as client:
        shares = Counter(who(client.get("/")) for _ in range(400))
        assert abs(shares["a"] / 400 - 0.25) <= 0.03, shares
        assert abs(shares["b"] / 400 - 0.75) <= 0.03, shares
        assert shares["idle"] == 0 and idle.hits == {}

        run(router.set_weights(env, "api", {a.address: 0, b.address: 1}))
        assert Counter(who(client.get("/")) for _ in range(60)) == {"b": 60}
        assert run(router.weights(env, "api")) == {a.address: 0, b.address: 1, idle.address: 0}

    # a partial change keeps the others; one unknown address refuses it all
    run(router.set_weights(env, "api", {a.address: 5}))
    assert run(router.weights(env, "api")) == {a.address: 5, b.address: 1, idle.address: 0}
    with pytest.raises(RouterError, match="not registered") as refused:
        run(router.set_weights(env, "api", {"127.0.0.1:1": 1, a.address: 0}))
    assert refused.value.hint and "register" in refused.value.hint
    assert run(router.weights(env, "api")) == {a.address: 5, b.address: 1, idle.address: 0}
    with pytest.raises(RouterError, match="whole number"):
        run(router.set_weights(env, "api", {a.address: -1}))
    run(router.register(env, "api", a.address))  # registering again keeps the weight
    assert run(router.weights(env, "api"))[a.address] == 5


def test_set_weights_moves_all_traffic_in_one_change(
    router: Router, env: str, backends: Callable[[str], Backend]
) -> None:
    listen = listen_address()
    blue, green = backends("blue"), backends("green")
    run(router.ensure_environment(env, listen, [RouteSpec("api")]))
    run(serve(router, env, "api", {blue.address: 1, green.address: 0}))
    with httpx.Client(base_url=f"http://{listen}") as client:
        assert Counter(who(client.get("/")) for _ in range(10)) == {"blue": 10}
        run(router.set_weights(env, "api", {blue.address: 0, green.address: 1}))
        assert Counter(who(client.get("/")) for _ in range(10)) == {"green": 10}
        run(router.set_weights(env, "api", {blue.address: 1, green.address: 0}))
        assert Counter(who(client.get("/")) for _ in range(10)) == {"blue": 10}


def test_weight_flips_under_keepalive_load_fail_no_request(
    harness: RouterHarness, router: Router, env: str, backends: Callable[[str], Backend]
) -> None:
    listen = listen_address()
    a, b = backends("a"), backends("b")
    run(router.ensure_environment(env, listen, [RouteSpec("api")]))
    run(serve(router, env, "api", {a.address: 1, b.address: 0}))
    load = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("keepalive_load.py")),
            f"http://{listen}/",
            "8",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert load.stdin is not None and load.stdout is not None
    try:
        assert load.stdout.readline().strip() == "ready"

        async def flip() -> None:
            for i in range(30):
                a_on = i % 2 == 1
                await router.set_weights(
                    env, "api", {a.address: int(a_on), b.address: int(not a_on)}
                )
                await asyncio.sleep(0.03)

        run(flip())
        time.sleep(0.1)
        summary = json.loads(load.communicate(timeout=60)[0])
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    retried = summary["retried_on_reused_connection"] + summary["retried_on_new_connection"]
    print(f"\n{harness.name}: keep-alive load across 30 weight flips: {summary}")
    # No request got an error status, a broken response or no response at all.
    assert summary["failures"] == []
    assert summary["ok"] > 300
    assert summary["per_backend"]["a"] > 30 and summary["per_backend"]["b"] > 30
    if not harness.reloads_on_weight_change:
        # weights change in place: no connection is ever closed, nothing to retry
        assert retried == 0, summary


# -- Drain and remove -------------------------------------------------------


def test_drain_waits_for_the_slow_request_in_flight(
    router: Router, env: str, backends: Callable[[str], Backend]
) -> None:
    listen = listen_address()
    a, b = backends("a"), backends("b")
    run(router.ensure_environment(env, listen, [RouteSpec("api")]))
    run(serve(router, env, "api", {a.address: 1, b.address: 0}))
    slow: dict[str, Any] = {}

    def slow_request() -> None:
        with httpx.Client(timeout=10) as client:
            response = client.get(f"http://{listen}/slow")
            slow.update(status=response.status_code, name=who(response), done=time.monotonic())

    thread = threading.Thread(target=slow_request)
    thread.start()
    wait_until(lambda: a.hits["/slow"] == 1)

    async def drain() -> tuple[int, int, float, str]:
        gave_up = await router.drain(env, "api", a.address, timeout=0.3)
        await router.set_weights(env, "api", {b.address: 1})
        async with httpx.AsyncClient() as client:
            during = who(await client.get(f"http://{listen}/"))
        drained = await router.drain(env, "api", a.address, timeout=10)
        return gave_up, drained, time.monotonic(), during

    gave_up, drained, returned, during = run(drain())
    thread.join()
    assert gave_up == 1  # still in flight after 0.3 s
    assert during == "b"  # a drained backend gets no new request
    assert drained == 0
    assert (slow["status"], slow["name"]) == (200, "a")  # the slow request completed
    assert slow["done"] <= returned  # and drain returned only after it had
    assert run(router.weights(env, "api")) == {a.address: 0, b.address: 1}


def test_remove_forgets_the_backend_and_is_idempotent(
    router: Router, env: str, backends: Callable[[str], Backend]
) -> None:
    listen = listen_address()
    a, b = backends("a"), backends("b")
    run(router.ensure_environment(env, listen, [RouteSpec("api")]))
    run(serve(router, env, "api", {a.address: 1, b.address: 1}))
    with httpx.Client(base_url=f"http://{listen}") as client:
        assert set(Counter(who(client.get("/")) for _ in range(10))) == {"a", "b"}
        run(router.remove(env, "api", a.address))
        run(router.remove(env, "api", a.address))  # idempotent
        run(router.remove(env, "api", "127.0.0.1:1"))  # never registered: nothing to do
        assert run(router.weights(env, "api")) == {b.address: 1}
        assert Counter(who(client.get("/")) for _ in range(10)) == {"b": 10}
        with pytest.raises(RouterError, match="not registered"):
            run(router.set_weights(env, "api", {a.address: 1}))

        run(router.remove(env, "api", b.address))
        assert run(router.weights(env, "api")) == {}
        assert client.get("/").text == "no healthy instance of api\n"

        run(router.register(env, "api", a.address))  # back, at weight 0
        assert run(router.weights(env, "api")) == {a.address: 0}
        run(router.set_weights(env, "api", {a.address: 2}))
        assert who(client.get("/")) == "a"


# -- Environments -----------------------------------------------------------


def test_ensure_environment_is_idempotent_and_keeps_backends(
    router: Router, env: str, backends: Callable[[str], Backend]
) -> None:
    listen = listen_address()
    a, b = backends("a"), backends("b")
    routes = [RouteSpec("api", "/api"), RouteSpec("web", "/")]
    run(router.ensure_environment(env, listen, routes))
    run(serve(router, env, "api", {a.address: 3}))
    run(router.register(env, "web", b.address))

    run(router.ensure_environment(env, listen, routes))
    assert run(router.weights(env, "api")) == {a.address: 3}
    assert run(router.weights(env, "web")) == {b.address: 0}

    # change the routes: api moves, web goes, docs comes; api keeps its backend
    new_routes = [RouteSpec("api", "/v1", strip_prefix=True), RouteSpec("docs", "/docs")]
    run(router.ensure_environment(env, listen, new_routes))
    assert run(router.weights(env, "api")) == {a.address: 3}
    assert run(router.weights(env, "docs")) == {}
    with pytest.raises(RouterError, match="has no route"):
        run(router.weights(env, "web"))
    with httpx.Client(base_url=f"http://{listen}") as client:
        moved = client.get("/v1/items").json()
        assert (moved["name"], moved["path"]) == ("a", "/items")
        assert client.get("/api/items").status_code == 404
        assert client.get("/docs").text == "no healthy instance of docs\n"


def test_remove_environment_stops_listening_and_forgets(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    env, listen = "doomed", listen_address()
    a = backends("a")
    run(router.ensure_environment(env, listen, [RouteSpec("api")]))
    run(serve(router, env, "api", {a.address: 1}))
    with httpx.Client(base_url=f"http://{listen}") as client:
        assert who(client.get("/")) == "a"

    run(router.remove_environment(env))
    run(router.remove_environment(env))  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{listen}/", timeout=2)
    with pytest.raises(RouterError, match="not routed"):
        run(router.weights(env, "api"))
    with pytest.raises(RouterError, match="not routed"):
        run(router.register(env, "api", a.address))


def test_listen_address_in_use_is_refused(router: Router, env: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(RouterError, match="already in use") as refused:
            run(router.ensure_environment(env, listen, [RouteSpec("api")]))
        assert refused.value.hint and listen in refused.value.hint
    used = listen_address()
    run(router.ensure_environment(env, used, [RouteSpec("api")]))
    with pytest.raises(RouterError, match="already used by"):
        run(router.ensure_environment(env + "-other", used, [RouteSpec("api")]))
    assert run(router.weights(env, "api")) == {}  # the first one is untouched


# -- Persistence ------------------------------------------------------------


def test_state_survives_a_new_router_and_a_process_restart(
    harness: RouterHarness, router: Router, env: str, backends: Callable[[str], Backend]
) -> None:
    listen = listen_address()
    a, b, c = backends("a"), backends("b"), backends("c")

    async def setup() -> None:
        await router.ensure_environment(
            env, listen, [RouteSpec("api", "/api"), RouteSpec("jobs", "/jobs")]
        )
        await serve(router, env, "api", {a.address: 2, b.address: 0})
        await router.register(env, "jobs", c.address)

    run(setup())
    expected = {"api": {a.address: 2, b.address: 0}, "jobs": {c.address: 0}}

    def observed(r: Router) -> dict[str, dict[str, int]]:
        return {service: run(r.weights(env, service)) for service in ("api", "jobs")}

    assert observed(harness.fresh()) == expected
    harness.restart()
    fresh = harness.fresh()
    assert observed(fresh) == expected
    with httpx.Client(base_url=f"http://{listen}") as client:
        assert Counter(who(client.get("/api/x")) for _ in range(10)) == {"a": 10}
        assert client.get("/jobs/1").text == "no healthy instance of jobs\n"
    # and the restarted process takes changes as before
    run(fresh.set_weights(env, "api", {a.address: 0, b.address: 1}))
    with httpx.Client(base_url=f"http://{listen}") as client:
        assert Counter(who(client.get("/api/x")) for _ in range(10)) == {"b": 10}


# -- Traffic stats ----------------------------------------------------------


def test_traffic_stats_counts_status_classes_per_backend(
    harness: RouterHarness, router: Router, env: str, backends: Callable[[str], Backend]
) -> None:
    listen = listen_address()
    a, b, idle = backends("a"), backends("b"), backends("idle")

    async def setup() -> None:
        await router.ensure_environment(env, listen, [RouteSpec("api", "/api"), RouteSpec("web")])
        await router.register(env, "api", idle.address)
        await serve(router, env, "api", {a.address: 1, b.address: 1})

    run(setup())
    with httpx.Client(base_url=f"http://{listen}") as client:
        for _ in range(10):
            assert client.get("/api/ok").status_code == 200
        for _ in range(3):
            assert client.get("/api/fail").status_code == 500
        for _ in range(4):
            assert client.get("/other").status_code == 503  # web: no backend, not counted

    def settled(r: Router, expected: int) -> Any:
        # the data plane may write its log just after the response: poll briefly
        stats = run(r.traffic_stats(env, "api"))
        complete = all(s.p50_ms is not None for s in stats.values() if s.requests)
        return stats if sum(s.requests for s in stats.values()) >= expected and complete else None

    stats = wait_until(lambda: settled(router, 13))
    assert set(stats) == {a.address, b.address, idle.address}
    assert stats[a.address].requests + stats[b.address].requests == 13
    for address in (a.address, b.address):
        s = stats[address]
        assert s.address == address
        assert s.requests > 0 and s.status_2xx + s.status_5xx == s.requests
        assert s.status_3xx == s.status_4xx == 0
        assert s.p50_ms is not None and s.p95_ms is not None and s.p99_ms is not None
        assert 0 <= s.p50_ms <= s.p95_ms <= s.p99_ms < 1000
        assert s.latency is not None and s.latency.count_above(1000.0) == 0
    assert stats[a.address].status_5xx + stats[b.address].status_5xx == 3
    assert stats[a.address].status_2xx + stats[b.address].status_2xx == 10
    assert stats[idle.address].requests == 0 and stats[idle.address].p50_ms is None

    # another Conveyor process (a new router object) goes on counting
    with httpx.Client(base_url=f"http://{listen}") as client:
        for _ in range(4):
            client.get("/api/ok")
    stats = wait_until(lambda: settled(harness.fresh(), 17))
    assert stats[a.address].requests + stats[b.address].requests == 17
    assert stats[a.address].status_5xx + stats[b.address].status_5xx == 3


def settled_stats(r: Router, env: str, service: str, expected: int) -> dict[str, TrafficStats]:
    """traffic_stats once `expected` requests are counted and every histogram has them all.

    The data plane logs a request just after its response (HAProxy's counters
    even lead its log a little): poll briefly.
    """

    def complete() -> dict[str, TrafficStats] | None:
        stats = run(r.traffic_stats(env, service))
        if sum(s.requests for s in stats.values()) < expected:
            return None
        if any(s.latency is None or s.latency.total != s.requests for s in stats.values()):
            return None
        return stats

    stats: dict[str, TrafficStats] = wait_until(complete, timeout=5)
    return stats


def histogram(stats: TrafficStats) -> Histogram:
    assert stats.latency is not None
    return stats.latency


def test_traffic_counters_are_cumulative_beyond_the_window_and_histograms_match(
    harness: RouterHarness,
    router: Router,
    env: str,
    backends: Callable[[str], Backend],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(harness.traffic_window, 4)  # p50..p99 cover the last 4 requests only
    listen = listen_address()
    a, b, idle = backends("a"), backends("b"), backends("idle")

    async def setup() -> None:
        await router.ensure_environment(env, listen, [RouteSpec("api", "/api")])
        await router.register(env, "api", idle.address)
        await serve(router, env, "api", {a.address: 1, b.address: 1})

    run(setup())
    paths = (
        ["/api/ok"] * 12
        + ["/api/status/302"] * 2
        + ["/api/status/404"] * 3
        + ["/api/fail"] * 3
        + ["/api/sleep/260"] * 4  # slower than the 250 ms bound, whoever serves them
    )
    with httpx.Client(base_url=f"http://{listen}") as client:
        for path in paths:
            client.get(path)
    stats = settled_stats(router, env, "api", len(paths))
    assert set(stats) == {a.address, b.address, idle.address}
    served = {a.address: a.hits.total(), b.address: b.hits.total()}
    assert sum(served.values()) == len(paths)
    for address, count in served.items():
        s = stats[address]
        # cumulative: far more than the window, and each request in the histogram once
        assert s.requests == count == histogram(s).total
        assert s.status_2xx + s.status_3xx + s.status_4xx + s.status_5xx == s.requests
        assert s.p50_ms is not None and s.p99_ms is not None
    classes = [sum(getattr(s, f"status_{n}xx") for s in stats.values()) for n in (2, 3, 4, 5)]
    assert classes == [16, 2, 3, 3]
    total = histogram(stats[a.address]) + histogram(stats[b.address])
    assert total.count_above(250.0) == 4  # the slow requests, and only them
    assert total.count_above(1000.0) == 0
    assert total.quantile(0.5) is not None and total.quantile(0.5) < 250  # type: ignore[operator]
    assert stats[idle.address].requests == 0 and histogram(stats[idle.address]).total == 0

    # another Conveyor process (a new router object) continues the same counters
    with httpx.Client(base_url=f"http://{listen}") as client:
        for _ in range(6):
            client.get("/api/ok")
    stats = settled_stats(harness.fresh(), env, "api", len(paths) + 6)
    assert sum(s.requests for s in stats.values()) == len(paths) + 6
    assert sum(histogram(s).total for s in stats.values()) == len(paths) + 6
    assert sum(s.status_2xx for s in stats.values()) == 16 + 6
    # and the first object reads the same (nothing counted twice)
    again = settled_stats(router, env, "api", len(paths) + 6)
    assert {k: (s.requests, s.latency) for k, s in again.items()} == {
        k: (s.requests, s.latency) for k, s in stats.items()
    }


def test_traffic_counters_of_a_removed_backend_start_again_from_zero(
    router: Router, env: str, backends: Callable[[str], Backend]
) -> None:
    listen = listen_address()
    a, b = backends("a"), backends("b")
    run(router.ensure_environment(env, listen, [RouteSpec("api")]))
    run(serve(router, env, "api", {a.address: 1, b.address: 1}))
    with httpx.Client(base_url=f"http://{listen}") as client:
        for _ in range(6):
            client.get("/")
    before = settled_stats(router, env, "api", 6)
    assert before[a.address].requests == before[b.address].requests == 3

    run(router.remove(env, "api", a.address))
    run(serve(router, env, "api", {a.address: 1}))  # the same address, registered again
    stats = run(router.traffic_stats(env, "api"))
    assert (stats[a.address].requests, histogram(stats[a.address]).total) == (0, 0)
    assert stats[a.address].p50_ms is None
    with httpx.Client(base_url=f"http://{listen}") as client:
        for _ in range(4):
            client.get("/")
    stats = settled_stats(router, env, "api", 3 + 4)
    assert stats[a.address].requests == histogram(stats[a.address]).total == 2
    assert stats[b.address].requests == histogram(stats[b.address]).total == 3 + 2

    run(router.remove(env, "api", b.address))  # a removed backend is no longer reported
    assert set(run(router.traffic_stats(env, "api"))) == {a.address}
