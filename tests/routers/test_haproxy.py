"""HAProxyRouter specifics: generated config, runtime API use, reloads, state file, supervisord.

What every router must do is in conformance.py (run for HAProxy by
test_conformance.py); this module checks how HAProxy does it. The
integration tests share one HAProxy process (conftest.py) and each uses its
own environment name and listen port.
"""

from __future__ import annotations

import asyncio
import contextlib
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

from conveyor.analysis.metrics import Histogram
from conveyor.errors import RouterError
from conveyor.paths import Paths
from conveyor.routers import haproxy, haproxy_process
from conveyor.routers.base import RouteSpec
from conveyor.routers.haproxy import (
    HAProxyRouter,
    _TrafficState,
    normalize_routes,
    parse_old_workers,
    parse_servers_state,
    parse_stat,
)
from conveyor.routers.haproxy_process import (
    LAYOUT_ENV,
    EnvironmentState,
    RouterState,
    check_config,
    config_path,
    ensure_haproxy,
    haproxy_argv,
    haproxy_weights,
    reload_haproxy,
    render_config,
    route_condition,
    running_layout,
    state_path,
    write_config,
)
from conveyor.targets.supervisor import Supervisor
from tests.routers.conftest import Backend, HAProxyProcess, free_port, run, wait_until, who

A, B = "10.0.0.1:8001", "10.0.0.2:8001"


def sample_state() -> RouterState:
    return RouterState(
        environments={
            "prod": EnvironmentState(
                listen="127.0.0.1:8080",
                routes=[
                    RouteSpec("web"),
                    RouteSpec("api", "/api"),
                    RouteSpec("v2", "/api/v2.beta", strip_prefix=True),
                    RouteSpec("admin", "/", host="admin.example"),
                ],
                backends={"api": {A: 1, B: 3}, "web": {A: 0}},
            ),
            "staging": EnvironmentState(listen=":8081", routes=[RouteSpec("api")], backends={}),
        }
    )


# -- Pure: config generation ----------------------------------------------------


def test_config_layout_routes_and_servers(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    text, digest = render_config(paths, sample_state())
    lines = [line.strip() for line in text.splitlines()]
    assert f"setenv {LAYOUT_ENV} {digest}" in lines
    assert f"stats socket {paths.haproxy_socket} mode 600 level admin expose-fd listeners" in lines
    assert "option http-server-close" not in text  # keep-alive to clients
    assert {"http-reuse safe", "option idle-close-on-response"} <= set(lines)
    frontend = lines[lines.index("frontend conveyor.prod") :]
    rules = [line for line in frontend if line.startswith(("use_backend", "default_backend"))]
    assert rules[:5] == [
        "use_backend conveyor.prod.v2 if { path '/api/v2.beta' } || { path_beg '/api/v2.beta/' }",
        "use_backend conveyor.prod.api if { path '/api' } || { path_beg '/api/' }",
        "use_backend conveyor.prod.admin if { req.hdr(host),field(1,:),lower -m str "
        "'admin.example' }",
        "use_backend conveyor.prod.web",
        "default_backend conveyor.prod..unrouted",
    ]
    v2 = lines[lines.index("backend conveyor.prod.v2") :]
    assert "http-request replace-path '^/api/v2\\.beta/?(.*)$' '/\\1'" in v2[:5]
    api = lines[lines.index("backend conveyor.prod.api") :]
    assert api[1] == "balance roundrobin"
    assert api[2].startswith("http-error status 503 ")
    assert api[2].endswith('string "no healthy instance of api\\n"')
    servers = [line for line in api[:8] if line.startswith("server ")]
    assert servers == [
        f"server {A} {A} weight 1 pool-max-conn -1 pool-purge-delay 5s",
        f"server {B} {B} weight 3 pool-max-conn -1 pool-purge-delay 5s",
    ]
    assert "bind :8081" in lines
    check_config(text, tmp_path)  # HAProxy itself accepts it


def test_layout_digest_ignores_servers_and_weights_but_not_routes(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    state = sample_state()
    _, digest = render_config(paths, state)
    state.environments["prod"].backends["api"] = {A: 7, "10.0.0.9:1": 0}
    assert render_config(paths, state)[1] == digest
    state.environments["prod"].routes.append(RouteSpec("docs", "/docs"))
    assert render_config(paths, state)[1] != digest


def test_route_conditions_with_host_and_path() -> None:
    assert route_condition(RouteSpec("a", "/api", "x.example")) == (
        "if { req.hdr(host),field(1,:),lower -m str 'x.example' } { path '/api' } "
        "|| { req.hdr(host),field(1,:),lower -m str 'x.example' } { path_beg '/api/' }"
    )


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ({}, {}),
        ({A: 0, B: 0}, {A: 0, B: 0}),
        ({A: 256, B: 1}, {A: 256, B: 1}),
        ({A: 1000, B: 1}, {A: 256, B: 1}),  # never rounded down to 0
        ({A: 300, B: 900}, {A: 85, B: 256}),
    ],
)
def test_weights_are_scaled_into_haproxy_range(
    weights: dict[str, int], expected: dict[str, int]
) -> None:
    assert haproxy_weights(weights) == expected


@pytest.mark.parametrize(
    ("route", "problem"),
    [
        (RouteSpec("api", "api"), "not a path prefix"),
        (RouteSpec("api", "/a b"), "not a path prefix"),
        (RouteSpec("api", "/a'b"), "not a path prefix"),
        (RouteSpec("api", "/a*"), "not a path prefix"),
        (RouteSpec("api", "/", host="x.example:80"), "not a host name"),
        (RouteSpec("api one"), "cannot be used"),
    ],
)
def test_routes_haproxy_cannot_match_are_refused(route: RouteSpec, problem: str) -> None:
    with pytest.raises(RouterError, match=problem) as refused:
        normalize_routes("prod", [route])
    assert refused.value.hint


def test_routes_are_normalized() -> None:
    assert normalize_routes("prod", [RouteSpec("a", "/api/", "X.Example")]) == [
        RouteSpec("a", "/api", "x.example")
    ]
    with pytest.raises(RouterError, match="routed twice"):
        normalize_routes("prod", [RouteSpec("a", "/x"), RouteSpec("a", "/y")])


def test_argv_runs_master_worker_in_the_foreground(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    argv = haproxy_argv(paths)
    # supervisord's PATH may lack /usr/sbin: the binary is named by its full path
    assert Path(argv[0]).is_absolute() and Path(argv[0]).name == "haproxy"
    assert argv[1:] == [
        "-W",
        "-S",
        f"{paths.haproxy_master_socket},mode,600",
        "-f",
        str(config_path(paths)),
    ]
    assert "-D" not in argv  # supervisord needs the master in the foreground


def test_damaged_state_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"environments": {"prod": {"routes": []}}}')
    with pytest.raises(RouterError, match="is damaged") as damaged:
        RouterState.load(path)
    assert damaged.value.hint and "deploy every environment again" in damaged.value.hint
    assert RouterState.load(tmp_path / "missing.json").environments == {}


def test_write_config_refused_by_haproxy_keeps_the_old_file(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    write_config(paths, sample_state())
    before = config_path(paths).read_text()
    broken = sample_state()
    broken.environments["prod"].listen = "127.0.0.1:99999"  # only the router checks ports
    with pytest.raises(RouterError, match="refused the generated config"):
        write_config(paths, broken)
    assert config_path(paths).read_text() == before


# -- Pure: parsing HAProxy's answers -----------------------------------------


def test_parse_answers() -> None:
    state = (
        "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state "
        "srv_uweight srv_iweight\n3 b 1 127.0.0.1:1 127.0.0.1 2 0 4 4\n"
        "3 b 2 127.0.0.1:2 127.0.0.1 0 1 0 0\n\n"
    )
    servers = parse_servers_state(state)
    assert servers is not None
    assert {n: (s.admin, s.weight) for n, s in servers.items()} == {
        "127.0.0.1:1": (0, 4),
        "127.0.0.1:2": (1, 0),
    }
    assert parse_servers_state("Can't find backend.\n\n") is None
    rows = parse_stat("# pxname,svname,scur,hrsp_2xx,\nb,s1,2,10,\nb,s2,0,3,\n\n")
    assert [(r["svname"], r["scur"], r["hrsp_2xx"]) for r in rows] == [
        ("s1", "2", "10"),
        ("s2", "0", "3"),
    ]
    assert parse_old_workers("#<PID> <type>\n1 master\n# workers\n9 worker\n# programs\n") == []


def test_traffic_state_reads_incrementally_and_follows_rotations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(haproxy, "TRAFFIC_WINDOW", 2)
    log = tmp_path / "haproxy.log"
    log.write_text(
        "[NOTICE]   (1) : New worker (2) forked\n"
        "conveyor-traffic conveyor.p.api 127.0.0.1:1 200 3 2\n"
        "conveyor-traffic conveyor.p.api <NOSRV> 503 0 -1\n"
        "conveyor-traffic conveyor.p.api 127.0.0.1:2 500 -1 -1\n"
        "conveyor-traffic conveyor.p.web 127.0.0.1:3 200 7 6\n"
        "conveyor-traffic conveyor.p.api 127.0.0.1:1 20"  # being written
    )
    traffic = _TrafficState.load(tmp_path / "traffic.json")
    traffic.ingest(log)
    assert {b: list(window.rows()) for b, window in traffic.recent.items()} == {
        "conveyor.p.api": [("127.0.0.1:1", 3.0)],
        "conveyor.p.web": [("127.0.0.1:3", 7.0)],
    }
    traffic.save(tmp_path / "traffic.json")
    with log.open("a") as handle:
        handle.write("0 4 4\n")
    log.rename(tmp_path / "haproxy.log.1")  # supervisord's rotations
    log.write_text("conveyor-traffic conveyor.p.api 127.0.0.1:2 200 300 5\n")
    (tmp_path / "haproxy.log.1").rename(tmp_path / "haproxy.log.2")
    log.rename(tmp_path / "haproxy.log.1")
    log.write_text("conveyor-traffic conveyor.p.api 127.0.0.1:1 200 5 5\n")
    traffic = _TrafficState.load(tmp_path / "traffic.json")
    traffic.ingest(log)
    assert list(traffic.recent["conveyor.p.api"].rows()) == [
        ("127.0.0.1:2", 300.0),
        ("127.0.0.1:1", 5.0),
    ]
    histograms = {s: t.histogram() for s, t in traffic.latencies["conveyor.p.api"].items()}
    assert {s: h.total for s, h in histograms.items()} == {"127.0.0.1:1": 3, "127.0.0.1:2": 1}
    assert histograms["127.0.0.1:2"].count_above(250.0) == 1
    assert traffic.position.offset == log.stat().st_size
    traffic.save(tmp_path / "traffic.json")

    traffic = _TrafficState.load(tmp_path / "traffic.json")
    assert traffic.latencies["conveyor.p.api"]["127.0.0.1:1"].histogram().total == 3
    traffic.keep_only({"conveyor.p.api": {"127.0.0.1:1"}})
    assert set(traffic.latencies) == set(traffic.recent) == {"conveyor.p.api"}
    assert set(traffic.latencies["conveyor.p.api"]) == {"127.0.0.1:1"}
    traffic.forget("conveyor.p.api", ["127.0.0.1:1"])
    assert traffic.latencies == {}
    assert list(traffic.recent["conveyor.p.api"].rows()) == [("127.0.0.1:2", 300.0)]


# -- Against a real HAProxy ---------------------------------------------------


@pytest.fixture
def router(haproxy: HAProxyProcess) -> HAProxyRouter:
    return HAProxyRouter(haproxy.paths)


@pytest.fixture
def env(request: pytest.FixtureRequest, router: HAProxyRouter) -> Iterator[str]:
    """An environment name unique to the test; removed afterwards."""
    name = request.node.name.removeprefix("test_").replace("_", "-")[:40]
    yield name
    run(router.remove_environment(name))


def reloads(haproxy: HAProxyProcess) -> tuple[int, str]:
    """(current worker PID, the master's reload counter)."""
    (worker,), _ = haproxy.workers()
    master_line = haproxy.command("show proc", master=True).splitlines()[1]
    return worker, master_line.split()[2]


def test_backend_changes_use_the_runtime_api_without_reload_and_are_persisted(
    haproxy: HAProxyProcess, router: HAProxyRouter, env: str, backends: Callable[[str], Backend]
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    a, b = backends("a"), backends("b")
    b_by_name = "localhost:" + b.address.rsplit(":", 1)[1]  # resolved for `add server`
    run(router.ensure_environment(env, listen, [RouteSpec("api")]))
    before = reloads(haproxy)

    async def changes() -> None:
        await router.register(env, "api", a.address)
        await router.register(env, "api", b_by_name)
        await router.set_weights(env, "api", {a.address: 1000, b_by_name: 3000})
        await router.drain(env, "api", a.address, timeout=1)
        await router.set_weights(env, "api", {a.address: 1})

    run(changes())
    assert reloads(haproxy) == before  # same worker, no reload
    backend = f"conveyor.{env}.api"
    servers = parse_servers_state(haproxy.command(f"show servers state {backend}"))
    assert servers is not None
    assert {n: (s.admin, s.weight) for n, s in servers.items()} == {
        a.address: (0, 1),
        b_by_name: (0, 256),  # 3000 scaled into HAProxy's 0..256
    }
    assert run(router.weights(env, "api")) == {a.address: 1, b_by_name: 3000}
    with httpx.Client(base_url=f"http://{listen}") as client:
        shares = Counter(who(client.get("/")) for _ in range(257))
        assert shares["a"] <= 3 and shares["b"] >= 254, shares

    saved = json.loads(state_path(haproxy.paths).read_text())
    assert saved["environments"][env]["backends"] == {"api": {a.address: 1, b_by_name: 3000}}
    config = config_path(haproxy.paths).read_text()
    assert f"server {a.address} {a.address} weight 1 " in config
    assert f"server {b_by_name} {b_by_name} weight 256 " in config

    run(router.remove(env, "api", a.address))
    servers = parse_servers_state(haproxy.command(f"show servers state {backend}"))
    assert servers is not None and set(servers) == {b_by_name}  # `del server`
    assert reloads(haproxy) == before


def test_environment_changes_reload_seamlessly_under_keepalive_load(
    haproxy: HAProxyProcess, router: HAProxyRouter, env: str, backends: Callable[[str], Backend]
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    a = backends("a")
    routes = [RouteSpec("api")]
    run(router.ensure_environment(env, listen, routes))
    run(router.register(env, "api", a.address))
    run(router.set_weights(env, "api", {a.address: 1}))
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
    worker_before, _ = reloads(haproxy)
    try:
        assert load.stdout.readline().strip() == "ready"

        async def reconfigure() -> None:
            for i in range(5):
                routes.append(RouteSpec(f"extra{i}", f"/extra{i}"))
                await router.ensure_environment(env, listen, routes)
                await asyncio.sleep(0.1)

        run(reconfigure())
        summary = json.loads(load.communicate(timeout=60)[0])
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    print(f"\nkeep-alive load across 5 HAProxy reloads: {summary}")
    assert reloads(haproxy)[0] != worker_before  # these did reload
    assert summary["failures"] == []
    assert summary["ok"] > 100
    # listeners are handed over and idle connections are not closed under
    # the client's feet (idle-close-on-response): nothing to retry either
    assert summary["retried_on_reused_connection"] == 0
    assert summary["retried_on_new_connection"] == 0


def test_drain_counts_requests_still_served_by_an_old_worker(
    haproxy: HAProxyProcess, router: HAProxyRouter, env: str, backends: Callable[[str], Backend]
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    a, b = backends("a"), backends("b")
    run(router.ensure_environment(env, listen, [RouteSpec("api")]))
    for backend, weight in ((a, 1), (b, 0)):
        run(router.register(env, "api", backend.address))
        run(router.set_weights(env, "api", {backend.address: weight}))
    slow: dict[str, Any] = {}

    def slow_request() -> None:
        with httpx.Client(timeout=10) as client:
            response = client.get(f"http://{listen}/slow")
            slow.update(status=response.status_code, done=time.monotonic())

    thread = threading.Thread(target=slow_request)
    thread.start()
    wait_until(lambda: a.hits["/slow"] == 1)
    # a reload: the slow request stays with the old worker
    run(router.ensure_environment(env, listen, [RouteSpec("api"), RouteSpec("jobs", "/jobs")]))
    _, old = haproxy.workers()
    assert old, "the old worker should still serve the slow request"

    async def drain() -> tuple[int, int, float]:
        gave_up = await router.drain(env, "api", a.address, timeout=0.2)
        drained = await router.drain(env, "api", a.address, timeout=10)
        return gave_up, drained, time.monotonic()

    gave_up, drained, returned = run(drain())
    thread.join()
    assert (gave_up, drained) == (1, 0)
    assert slow["status"] == 200 and slow["done"] <= returned


def test_drain_waits_for_an_old_worker_that_may_still_route_to_the_server(
    haproxy: HAProxyProcess, router: HAProxyRouter, env: str, backends: Callable[[str], Backend]
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    a, b = backends("a"), backends("b")
    run(router.ensure_environment(env, listen, [RouteSpec("api")]))
    for backend, weight in ((a, 1), (b, 0)):
        run(router.register(env, "api", backend.address))
        run(router.set_weights(env, "api", {backend.address: weight}))
    with httpx.Client(base_url=f"http://{listen}") as idle_client:
        assert who(idle_client.get("/")) == "a"  # then idle, kept alive
        run(router.ensure_environment(env, listen, [RouteSpec("api"), RouteSpec("jobs", "/jobs")]))
        run(router.set_weights(env, "api", {a.address: 0, b.address: 1}))
        with httpx.Client(base_url=f"http://{listen}") as new_client:
            assert who(new_client.get("/")) == "b"
        # the old worker keeps the idle connection and its weights of the reload time
        assert run(router.drain(env, "api", a.address, timeout=0.2)) == 1
        stale = idle_client.get("/")
        assert (who(stale), stale.headers["connection"]) == ("a", "close")

    async def drained() -> tuple[int, float]:
        started = time.monotonic()
        return await router.drain(env, "api", a.address, timeout=60), time.monotonic() - started

    left, waited = run(drained())
    # the old worker left with its last connection: no waiting for the minute of the timeout
    assert left == 0 and waited < 15


def test_remove_during_a_request_lets_it_finish_then_deletes_the_server(
    haproxy: HAProxyProcess, router: HAProxyRouter, env: str, backends: Callable[[str], Backend]
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    a, b = backends("a"), backends("b")
    run(router.ensure_environment(env, listen, [RouteSpec("api")]))
    for backend in (a, b):
        run(router.register(env, "api", backend.address))
    run(router.set_weights(env, "api", {a.address: 1}))
    slow: dict[str, int] = {}

    def slow_request() -> None:
        with httpx.Client(timeout=10) as client:
            slow["status"] = client.get(f"http://{listen}/slow").status_code

    thread = threading.Thread(target=slow_request)
    thread.start()
    wait_until(lambda: a.hits["/slow"] == 1)
    run(router.remove(env, "api", a.address))
    backend = f"conveyor.{env}.api"
    servers = parse_servers_state(haproxy.command(f"show servers state {backend}"))
    assert servers is not None and servers[a.address].admin & 1  # kept, in maintenance
    assert run(router.weights(env, "api")) == {b.address: 0}
    thread.join()
    assert slow["status"] == 200
    run(router.set_weights(env, "api", {b.address: 1}))  # the next change deletes it
    servers = parse_servers_state(haproxy.command(f"show servers state {backend}"))
    assert servers is not None and set(servers) == {b.address}


def test_counters_survive_a_reload(
    router: HAProxyRouter, env: str, backends: Callable[[str], Backend]
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    a = backends("a")
    run(router.ensure_environment(env, listen, [RouteSpec("api")]))
    run(router.register(env, "api", a.address))
    run(router.set_weights(env, "api", {a.address: 1}))
    with httpx.Client(base_url=f"http://{listen}") as client:
        for path in ("/ok", "/ok", "/fail"):
            client.get(path)
    run(router.ensure_environment(env, listen, [RouteSpec("api"), RouteSpec("jobs", "/jobs")]))
    with httpx.Client(base_url=f"http://{listen}") as client:
        client.get("/ok")
    stats = run(router.traffic_stats(env, "api"))[a.address]
    assert (stats.requests, stats.status_2xx, stats.status_5xx) == (4, 3, 1)
    # the latency histogram, from the log, spans the reload too
    wait_until(
        lambda: (
            (run(router.traffic_stats(env, "api"))[a.address].latency or Histogram.empty()).total
            == 4
        )
    )


def test_failed_reload_keeps_the_running_config(
    haproxy: HAProxyProcess, router: HAProxyRouter, env: str
) -> None:
    paths = haproxy.paths
    listen = f"127.0.0.1:{free_port()}"
    run(router.ensure_environment(env, listen, [RouteSpec("api")]))
    running = run(running_layout(paths))
    state = RouterState.load(state_path(paths))
    with socket_taken() as taken:
        state.environments["broken"] = EnvironmentState(taken, [RouteSpec("api")], {})
        digest = write_config(paths, state)
        with pytest.raises(RouterError, match="could not load its new config") as failed:
            run(reload_haproxy(paths, digest, timeout=10))
    assert "Address already in use" in failed.value.message
    assert run(running_layout(paths)) == running  # the old worker goes on
    write_config(paths, RouterState.load(state_path(paths)))
    run(router.ensure_environment(env, listen, [RouteSpec("api")]))
    assert run(running_layout(paths)) == running


@contextlib.contextmanager
def socket_taken() -> Iterator[str]:
    """A listening TCP socket on a free port; yields its address."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def test_haproxy_not_running_is_reported(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "home")
    router = HAProxyRouter(paths)
    with pytest.raises(RouterError, match="cannot reach the stats socket") as down:
        run(router.ensure_environment("prod", "127.0.0.1:1", [RouteSpec("api")]))
    assert down.value.hint and "conveyor-haproxy" in down.value.hint
    assert not state_path(paths).exists()  # nothing was changed
    state = RouterState({"prod": EnvironmentState("127.0.0.1:1", [RouteSpec("api")], {})})
    state_path(paths).parent.mkdir(parents=True, exist_ok=True)
    state.save(state_path(paths))
    with pytest.raises(RouterError, match="cannot reach the stats socket"):
        run(router.register("prod", "api", "127.0.0.1:2"))
    assert run(router.weights("prod", "api")) == {}  # the file alone still answers


# -- Under supervisord ----------------------------------------------------------


def test_ensure_haproxy_starts_it_under_supervisord_and_a_restart_keeps_routing(
    tmp_path: Path, backends: Callable[[str], Backend]
) -> None:
    paths = Paths(tmp_path / "home").ensure()
    supervisor = Supervisor(paths)
    a = backends("a")
    listen = f"127.0.0.1:{free_port()}"
    try:
        run(ensure_haproxy(supervisor, paths))
        router = HAProxyRouter(paths)

        async def setup() -> None:
            await router.ensure_environment("prod", listen, [RouteSpec("api")])
            await router.register("prod", "api", a.address)
            await router.set_weights("prod", "api", {a.address: 1})

        run(setup())
        assert who(httpx.get(f"http://{listen}/")) == "a"
        info = supervisor.program_info(haproxy_process.PROGRAM)
        assert info is not None and info.owner == "haproxy"
        run(ensure_haproxy(supervisor, paths))  # running: nothing to do

        supervisor.remove_program(haproxy_process.PROGRAM)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{listen}/", timeout=2)
        run(ensure_haproxy(supervisor, paths))  # from the state file
        assert who(httpx.get(f"http://{listen}/")) == "a"
        assert run(router.weights("prod", "api")) == {a.address: 1}
        wait_until(lambda: "conveyor-traffic conveyor.prod.api" in haproxy_log(paths))
    finally:
        supervisor.shutdown(timeout=30)


def haproxy_log(paths: Paths) -> str:
    path = haproxy_process.log_path(paths)
    return path.read_text() if path.exists() else ""
