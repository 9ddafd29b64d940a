"""CaddyRouter against a real Caddy (one subprocess for the module) and real HTTP backends.

The Caddy process, the backends and the helpers are in conftest.py; the
behaviour every router shares is also checked by conformance.py.

Every test uses its own environment name, listen port and router state
directory, so the tests share the Caddy process but nothing else.
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
from typing import Any

import httpx
import pytest

from conveyor.errors import RouterError
from conveyor.routers.base import RouteSpec
from conveyor.routers.caddy import CaddyRouter, route_id
from conveyor.routers.caddy_process import autosave_path
from tests.routers.conftest import Backend, CaddyProcess, free_port, run, wait_until, who


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "router"


@pytest.fixture
def router(caddy: CaddyProcess, state_dir: Path) -> CaddyRouter:
    return CaddyRouter(caddy.paths.caddy_admin_socket, state_dir)


@pytest.fixture
def env(request: pytest.FixtureRequest, router: CaddyRouter) -> Iterator[str]:
    """An environment name unique to the test; removed afterwards."""
    name = request.node.name.removeprefix("test_").replace("_", "-")[:40]
    yield name
    run(router.remove_environment(name))


# -- Routing ----------------------------------------------------------------


def test_routes_by_prefix_and_host_and_strips_prefix(
    router: CaddyRouter, env: str, backends: Callable[[str], Backend]
) -> None:
    listen = f"127.0.0.1:{free_port()}"
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
            await router.register(env, service, backend.address)
            await router.set_weights(env, service, {backend.address: 1})

    run(setup())
    with httpx.Client(base_url=f"http://{listen}") as client:
        seen = {path: client.get(path).json() for path in ["/api", "/api/x?q=1", "/apix", "/"]}
        assert {p: (s["name"], s["path"]) for p, s in seen.items()} == {
            "/api": ("api", "/api"),
            "/api/x?q=1": ("api", "/api/x?q=1"),
            "/apix": ("web", "/apix"),
            "/": ("web", "/"),
        }
        stripped = client.get("/api/v2/users/7").json()
        assert (stripped["name"], stripped["path"]) == ("v2", "/users/7")
        assert client.get("/api/v2").json()["path"] == "/"
        by_host = client.get("/api", headers={"Host": "admin.example"}).json()
        assert by_host["name"] == "api"  # the longer prefix wins over the host
        by_host = client.get("/dashboard", headers={"Host": "admin.example"}).json()
        assert (by_host["name"], by_host["host"]) == ("admin", "admin.example")
        assert who(client.get("/dashboard", headers={"Host": "other.example"})) == "web"


def test_unrouted_path_gets_404_and_service_without_backend_gets_503(
    caddy: CaddyProcess,
    router: CaddyRouter,
    env: str,
    backends: Callable[[str], Backend],
    state_dir: Path,
) -> None:
    listen = f"127.0.0.1:{free_port()}"
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
        assert client.get("/api/x").status_code == 503  # registered with weight 0
        assert run(router.weights(env, "api")) == {a.address: 0}
        # Caddy refuses an all-zero weighted_round_robin: the 503 is followed by
        # a proxy that is never reached and only keeps the backend registered
        handle = caddy.config(f"/id/{route_id(env, 'api')}")["handle"]
        assert [h["handler"] for h in handle][-2:] == ["static_response", "reverse_proxy"]
        assert handle[-1]["upstreams"] == [{"dial": a.address}]

        run(router.set_weights(env, "api", {a.address: 1}))
        assert who(client.get("/api/x")) == "a"

        run(router.set_weights(env, "api", {a.address: 0}))
        assert client.get("/api/x").text == "no healthy instance of api\n"
        fresh = CaddyRouter(router.admin_socket, state_dir)
        assert run(fresh.weights(env, "api")) == {a.address: 0}
        assert not list(state_dir.glob("*.json"))  # nothing kept outside Caddy's config


# -- Weights ----------------------------------------------------------------


def test_weighted_split_is_accurate_and_weight_zero_gets_nothing(
    caddy: CaddyProcess, router: CaddyRouter, env: str, backends: Callable[[str], Backend]
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    a, b = backends("a"), backends("b")

    async def setup() -> None:
        await router.ensure_environment(env, listen, [RouteSpec("api")])
        await router.register(env, "api", a.address)
        await router.register(env, "api", b.address)
        await router.set_weights(env, "api", {a.address: 1, b.address: 3})

    run(setup())
    with httpx.Client(base_url=f"http://{listen}") as client:
        shares = Counter(who(client.get("/")) for _ in range(400))
        assert abs(shares["a"] / 400 - 0.25) <= 0.03, shares
        assert abs(shares["b"] / 400 - 0.75) <= 0.03, shares

        # Caddy 2.11 honours weight 0: a stays an upstream but gets nothing
        run(router.set_weights(env, "api", {a.address: 0, b.address: 1}))
        assert Counter(who(client.get("/")) for _ in range(60)) == {"b": 60}
        handler = caddy.config(f"/id/{route_id(env, 'api')}")["handle"][-1]
        assert [u["dial"] for u in handler["upstreams"]] == [a.address, b.address]
        assert handler["load_balancing"]["selection_policy"]["weights"] == [0, 1]
        assert run(router.weights(env, "api")) == {a.address: 0, b.address: 1}

        # a partial change keeps the others; one unknown address refuses it all
        run(router.set_weights(env, "api", {a.address: 5}))
        assert run(router.weights(env, "api")) == {a.address: 5, b.address: 1}
        with pytest.raises(RouterError, match="not registered") as refused:
            run(router.set_weights(env, "api", {"127.0.0.1:1": 1, a.address: 0}))
        assert refused.value.hint and "register" in refused.value.hint
        assert run(router.weights(env, "api")) == {a.address: 5, b.address: 1}
        with pytest.raises(RouterError, match="whole number"):
            run(router.set_weights(env, "api", {a.address: -1}))


def test_weight_flips_under_keepalive_load_fail_no_request(
    caddy: CaddyProcess, router: CaddyRouter, env: str, backends: Callable[[str], Backend]
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    a, b = backends("a"), backends("b")

    async def setup() -> None:
        await router.ensure_environment(env, listen, [RouteSpec("api")])
        await router.register(env, "api", a.address)
        await router.register(env, "api", b.address)
        await router.set_weights(env, "api", {a.address: 1, b.address: 0})

    run(setup())
    admin_log_size = caddy.log.stat().st_size
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
            for i in range(50):
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
    print(f"\nkeep-alive load across 50 weight flips: {summary}")
    # each weight change was one config change: a PATCH of the route by @id
    with caddy.log.open("rb") as log:
        log.seek(admin_log_size)
        changes = [
            (entry["method"], entry["uri"])
            for entry in map(json.loads, log)
            if entry.get("logger") == "admin.api" and entry.get("method") != "GET"
        ]
    assert changes == [("PATCH", f"/id/{route_id(env, 'api')}")] * 50
    # No request got an error status, a broken response or no response at all.
    assert summary["failures"] == []
    assert summary["ok"] > 500
    assert summary["per_backend"]["a"] > 50 and summary["per_backend"]["b"] > 50
    # Each reload closes the old server's idle keep-alive connections, so a
    # client that does not retry them (httpx, http.client) sees errors: about
    # 2 per 100 requests here. New connections are mostly safe once the kernel
    # migrates those queued on the old SO_REUSEPORT listener
    # (net.ipv4.tcp_migrate_req=1), but a connection Caddy accepts in the
    # middle of a reload can still be closed unanswered now and then (seen in
    # about 2 runs of 5, once per run), so those retries are reported, not
    # asserted away: the README says so, and HAProxy needs none.


# -- Drain ------------------------------------------------------------------


def test_drain_waits_for_the_slow_request_in_flight(
    router: CaddyRouter, env: str, backends: Callable[[str], Backend]
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    a, b = backends("a"), backends("b")

    async def setup() -> None:
        await router.ensure_environment(env, listen, [RouteSpec("api")])
        await router.register(env, "api", a.address)
        await router.register(env, "api", b.address)
        await router.set_weights(env, "api", {a.address: 1, b.address: 0})

    run(setup())
    slow: dict[str, Any] = {}

    def slow_request() -> None:
        with httpx.Client(timeout=10) as client:
            response = client.get(f"http://{listen}/slow")
            slow.update(name=who(response), done=time.monotonic())

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
    assert during == "b"  # drained backend gets no new request
    assert drained == 0
    assert slow["name"] == "a"  # the slow request completed successfully
    assert slow["done"] <= returned  # and drain returned only after it had
    assert run(router.weights(env, "api")) == {a.address: 0, b.address: 1}

    run(router.remove(env, "api", a.address))
    run(router.remove(env, "api", a.address))  # idempotent
    assert run(router.weights(env, "api")) == {b.address: 1}


# -- Persistence ------------------------------------------------------------


def test_state_survives_a_new_router_and_a_caddy_restart(
    caddy: CaddyProcess,
    router: CaddyRouter,
    env: str,
    backends: Callable[[str], Backend],
    state_dir: Path,
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    a, b, c = backends("a"), backends("b"), backends("c")

    async def setup() -> None:
        await router.ensure_environment(
            env, listen, [RouteSpec("api", "/api"), RouteSpec("jobs", "/jobs")]
        )
        for address in (a.address, b.address):
            await router.register(env, "api", address)
        await router.set_weights(env, "api", {a.address: 2, b.address: 0})
        await router.register(env, "jobs", c.address)

    run(setup())
    expected = {"api": {a.address: 2, b.address: 0}, "jobs": {c.address: 0}}

    def observed(r: CaddyRouter) -> dict[str, dict[str, int]]:
        return {service: run(r.weights(env, service)) for service in ("api", "jobs")}

    assert observed(CaddyRouter(caddy.paths.caddy_admin_socket, state_dir)) == expected

    caddy.stop()
    with pytest.raises(RouterError) as down:
        run(router.weights(env, "api"))
    assert "cannot reach the admin API" in down.value.message
    assert down.value.hint and "conveyor status" in down.value.hint
    assert autosave_path(caddy.paths).exists()

    caddy.start()  # same argv: --resume loads the autosaved config, not the bootstrap
    assert observed(CaddyRouter(caddy.paths.caddy_admin_socket, state_dir)) == expected
    with httpx.Client(base_url=f"http://{listen}") as client:
        assert Counter(who(client.get("/api/x")) for _ in range(10)) == {"a": 10}
        assert client.get("/jobs/1").text == "no healthy instance of jobs\n"


# -- Environments -----------------------------------------------------------


def test_ensure_environment_is_idempotent_and_keeps_backends(
    caddy: CaddyProcess, router: CaddyRouter, env: str, backends: Callable[[str], Backend]
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    a, b = backends("a"), backends("b")
    routes = [RouteSpec("api", "/api"), RouteSpec("web", "/")]

    async def setup() -> None:
        await router.ensure_environment(env, listen, routes)
        await router.register(env, "api", a.address)
        await router.set_weights(env, "api", {a.address: 3})
        await router.register(env, "web", b.address)

    run(setup())
    with caddy.admin() as admin:
        etag = admin.get("/config/").headers["etag"]
    run(router.ensure_environment(env, listen, routes))
    with caddy.admin() as admin:
        assert admin.get("/config/").headers["etag"] == etag  # nothing was reloaded

    # change the routes: api moves, web goes, docs comes; api keeps its backend
    run(
        router.ensure_environment(
            env, listen, [RouteSpec("api", "/v1", strip_prefix=True), RouteSpec("docs", "/docs")]
        )
    )
    assert run(router.weights(env, "api")) == {a.address: 3}
    assert run(router.weights(env, "docs")) == {}
    with pytest.raises(RouterError, match="has no route"):
        run(router.weights(env, "web"))
    with httpx.Client(base_url=f"http://{listen}") as client:
        moved = client.get("/v1/items").json()
        assert (moved["name"], moved["path"]) == ("a", "/items")
        assert client.get("/api/items").status_code == 404


def test_remove_environment_stops_listening_and_forgets(
    caddy: CaddyProcess, router: CaddyRouter, backends: Callable[[str], Backend], state_dir: Path
) -> None:
    env, listen = "doomed", f"127.0.0.1:{free_port()}"
    a = backends("a")

    async def setup() -> None:
        await router.ensure_environment(env, listen, [RouteSpec("api")])
        await router.register(env, "api", a.address)
        await router.set_weights(env, "api", {a.address: 1})

    run(setup())
    with httpx.Client(base_url=f"http://{listen}") as client:
        assert who(client.get("/")) == "a"
    wait_until(lambda: router.access_log(env).exists())

    run(router.remove_environment(env))
    run(router.remove_environment(env))  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{listen}/", timeout=2)
    config = caddy.config()
    assert env not in config["apps"]["http"]["servers"]
    assert f"conveyor_{env}" not in config["logging"]["logs"]
    assert not router.access_log(env).exists()
    with pytest.raises(RouterError, match="not routed"):
        run(router.weights(env, "api"))


def test_listen_address_taken_is_refused_before_caddy_is_touched(
    caddy: CaddyProcess, router: CaddyRouter, env: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        with caddy.admin() as admin:
            etag = admin.get("/config/").headers["etag"]
        with pytest.raises(RouterError, match="already in use") as refused:
            run(router.ensure_environment(env, listen, [RouteSpec("api")]))
        assert refused.value.hint and listen in refused.value.hint
        with caddy.admin() as admin:
            assert admin.get("/config/").headers["etag"] == etag

    used = f"127.0.0.1:{free_port()}"
    run(router.ensure_environment(env, used, [RouteSpec("api")]))
    with pytest.raises(RouterError, match=f"already used by Caddy server '{env}'"):
        run(router.ensure_environment("other", used, [RouteSpec("api")]))


def test_caddy_refusal_is_reported_with_its_body(router: CaddyRouter) -> None:
    async def bad_patch() -> None:
        async with router._admin() as client:
            await router._call(client, "PATCH", "/id/nope", body={}, what="patch a missing id")

    with pytest.raises(RouterError) as refused:
        run(bad_patch())
    assert "HTTP 404" in refused.value.message
    assert "unknown object ID 'nope'" in refused.value.message
    assert refused.value.hint


# -- Traffic stats ----------------------------------------------------------


def test_traffic_stats_counts_status_classes_per_backend(
    router: CaddyRouter, env: str, backends: Callable[[str], Backend], state_dir: Path
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    a, b, idle = backends("a"), backends("b"), backends("idle")

    async def setup() -> None:
        await router.ensure_environment(env, listen, [RouteSpec("api", "/api"), RouteSpec("web")])
        for address in (a.address, b.address, idle.address):
            await router.register(env, "api", address)
        await router.set_weights(env, "api", {a.address: 1, b.address: 1})

    run(setup())
    with httpx.Client(base_url=f"http://{listen}") as client:
        for _ in range(10):
            assert client.get("/api/ok").status_code == 200
        for _ in range(3):
            assert client.get("/api/fail").status_code == 500
        for _ in range(4):
            assert client.get("/other").status_code == 503  # web: no backend, not counted

    def settled(r: CaddyRouter, expected: int) -> Any:
        # Caddy writes the access line just after the response: poll briefly
        stats = run(r.traffic_stats(env, "api"))
        return stats if sum(s.requests for s in stats.values()) >= expected else None

    stats = wait_until(lambda: settled(router, 13))
    assert set(stats) == {a.address, b.address, idle.address}
    total = stats[a.address].requests + stats[b.address].requests
    assert total == 13
    for address in (a.address, b.address):
        s = stats[address]
        assert s.status_2xx + s.status_5xx == s.requests
        assert s.p50_ms is not None and s.p95_ms is not None and s.p99_ms is not None
        assert 0 < s.p50_ms <= s.p95_ms <= s.p99_ms < 1000
    assert stats[a.address].status_5xx + stats[b.address].status_5xx == 3
    assert stats[a.address].status_2xx + stats[b.address].status_2xx == 10
    assert stats[idle.address].requests == 0 and stats[idle.address].p50_ms is None

    # incremental: a new process (new router) continues from the saved offset
    with httpx.Client(base_url=f"http://{listen}") as client:
        for _ in range(4):
            client.get("/api/ok")
    fresh = CaddyRouter(router.admin_socket, state_dir)
    stats = wait_until(lambda: settled(fresh, 17))
    assert stats[a.address].requests + stats[b.address].requests == 17
    assert stats[a.address].status_5xx + stats[b.address].status_5xx == 3
    saved = json.loads((state_dir / f"traffic-{env}.json").read_text())
    assert saved["offset"] == router.access_log(env).stat().st_size
