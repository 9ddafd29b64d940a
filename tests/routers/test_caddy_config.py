"""The pure parts of the Caddy router: config builders, access-log reading, process setup."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conveyor.paths import Paths
from conveyor.routers import caddy
from conveyor.routers.base import RouteSpec
from conveyor.routers.caddy import (
    backends_of_route,
    build_route,
    build_server,
    normalize_upstream,
    order_routes,
    rolled_logs,
    with_backends,
)
from conveyor.routers.caddy_process import (
    autosave_path,
    bootstrap_config,
    caddy_argv,
    caddy_env,
    write_bootstrap_config,
)
from conveyor.routers.traffic import percentile

A, B = "10.0.0.1:8001", "10.0.0.2:8001"


@pytest.mark.parametrize(
    ("backends", "handlers"),
    [
        ({A: 1, B: 3}, ["reverse_proxy"]),
        ({A: 0, B: 2}, ["reverse_proxy"]),
        ({A: 0, B: 0}, ["static_response", "reverse_proxy"]),
        ({}, ["static_response"]),
    ],
)
def test_backends_round_trip_through_the_route(
    backends: dict[str, int], handlers: list[str]
) -> None:
    route = build_route("prod", RouteSpec("api", "/api", strip_prefix=True), backends)
    assert [h["handler"] for h in route["handle"]] == [
        "log_append",
        "log_append",
        "rewrite",
        *handlers,
    ]
    assert backends_of_route(route) == backends
    changed = with_backends("prod", route, "api", {**backends, "10.0.0.3:8001": 5})
    assert backends_of_route(changed) == {**backends, "10.0.0.3:8001": 5}
    assert changed["handle"][:3] == route["handle"][:3]
    assert with_backends("prod", changed, "api", backends) == route


def test_route_matchers() -> None:
    api = build_route("prod", RouteSpec("api", "/api", host="shop.example"), {})
    assert api["@id"] == "conveyor-prod-api"
    assert api["match"] == [{"path": ["/api", "/api/*"], "host": ["shop.example"]}]
    assert api["terminal"] is True
    assert "match" not in build_route("prod", RouteSpec("web", "/"), {})
    strip_root = build_route("prod", RouteSpec("web", "/", strip_prefix=True), {})
    assert all(h["handler"] != "rewrite" for h in strip_root["handle"])


def test_server_orders_routes_and_ends_with_a_404() -> None:
    server = build_server(
        "prod",
        "127.0.0.1:8080",
        [RouteSpec("web"), RouteSpec("api", "/api"), RouteSpec("admin", "/", "admin.example")],
        {"api": {A: 1}},
    )
    assert server["listen"] == ["127.0.0.1:8080"]
    assert server["automatic_https"] == {"disable": True}
    assert server["logs"] == {"default_logger_name": "conveyor_prod"}
    ids = [r["@id"] for r in server["routes"]]
    assert ids == [
        "conveyor-prod-api",
        "conveyor-prod-admin",
        "conveyor-prod-web",
        "conveyor-prod--fallback",
    ]
    assert server["routes"][-1]["handle"][0]["status_code"] == 404
    assert [r.service for r in order_routes([RouteSpec("a", "/x"), RouteSpec("b", "/x/y")])] == [
        "b",
        "a",
    ]


def test_percentile_and_upstream_names() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 0.99)) == (
        50.0,
        95.0,
        99.0,
    )
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.99) == 7.0
    assert normalize_upstream("tcp/127.0.0.1:8001") == "127.0.0.1:8001"
    assert normalize_upstream("127.0.0.1:8001") == "127.0.0.1:8001"
    assert normalize_upstream("") is None
    assert normalize_upstream(None) is None


def _line(route: str, upstream: str, status: int = 200, duration: float = 0.01) -> str:
    return (
        json.dumps(
            {
                "msg": "handled request",
                "status": status,
                "duration": duration,
                "conveyor_route": route,
                "upstream": upstream,
            }
        )
        + "\n"
    )


def _caddy_line(uri: str, headers: dict[str, list[str]], upstream: str, status: int) -> bytes:
    """An access line laid out as Caddy 2.11 writes it (compact JSON, this key order)."""
    entry = {
        "level": "info",
        "msg": "handled request",
        "request": {"method": "GET", "uri": uri, "headers": headers},
        "bytes_read": 0,
        "user_id": "",
        "duration": 0.0123,
        "size": 58,
        "status": status,
        "resp_headers": {"Content-Type": ["application/json"]},
        "upstream": upstream,
        "conveyor_route": "conveyor-prod-api",
    }
    return json.dumps(entry, separators=(",", ":")).encode()


def test_access_fields_without_a_json_parse_resist_what_clients_send() -> None:
    hostile = ',"duration":9,"size":1,"status":599,"upstream":"tcp/6.6.6.6:1","conveyor_route":"x"}'
    line = _caddy_line("/api?q=" + hostile, {"duration": ["1"], "X": [hostile]}, f"tcp/{A}", 404)
    assert caddy._TIMING_RE.search(line) and caddy._APPENDED_RE.search(line)  # the fast path
    assert caddy.access_fields(line) == ("conveyor-prod-api", A, 404, 12.3)
    # a 503 answered without a backend, another layout (JSON parse), not ours, garbage
    assert caddy.access_fields(_caddy_line("/", {}, "", 503)) is None
    spaced = json.dumps(json.loads(line)).encode()
    assert not caddy._TIMING_RE.search(spaced)
    assert caddy.access_fields(spaced) == ("conveyor-prod-api", A, 404, 12.3)
    assert caddy.access_fields(b'{"msg":"handled request","status":404}') is None
    assert caddy.access_fields(b'{"conveyor_route": 12') is None


def test_traffic_state_counts_incrementally_beyond_the_window_and_follows_rolls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(caddy, "TRAFFIC_WINDOW", 3)
    log = tmp_path / "access-prod.log"
    state = tmp_path / "traffic-prod.json"
    log.write_text(_line("r", f"tcp/{A}") + _line("r", "", 503) + '{"status": 2')
    traffic = caddy._TrafficState.load(state)
    traffic.ingest(log)
    assert list(traffic.recent["r"].rows()) == [(A, 10.0)]  # 503 without upstream skipped
    assert traffic.tallies["r"][A].requests == 1
    traffic.save(state)

    # the half-written line completes, more lines, then Caddy rolls the file twice
    with log.open("a") as handle:
        handle.write('00, "duration": 0.5, "conveyor_route": "r", "upstream": "x:1"}\n')
        handle.write(_line("r", B, 500, 0.002))
    log.rename(tmp_path / "access-prod-2026-01-01T00-00-00.000.log")
    log.write_text(_line("r", A, 302) + _line("r", A, 404, 0.3))
    log.rename(tmp_path / "access-prod-2026-01-01T00-01-00.000.log")
    log.write_text(_line("r", A, 200, 2.5) + _line("other", B))
    # another environment's log (`prod-eu`) is no rolled copy of this one
    (tmp_path / "access-prod-eu.log").write_text(_line("r", A) * 5)
    assert [p.name for p in sorted(rolled_logs(log))] == [
        "access-prod-2026-01-01T00-00-00.000.log",
        "access-prod-2026-01-01T00-01-00.000.log",
    ]

    traffic = caddy._TrafficState.load(state)
    traffic.ingest(log)
    assert list(traffic.recent["r"].rows()) == [(A, 10.0), (A, 300.0), (A, 2500.0)]  # the last 3
    assert list(traffic.recent["other"].rows()) == [(B, 10.0)]
    assert traffic.position.offset == log.stat().st_size
    stats = traffic.stats("r", [A, B, "x:1", "idle:1"])
    a = stats[A]
    assert (a.requests, a.status_2xx, a.status_3xx, a.status_4xx, a.status_5xx) == (4, 2, 1, 1, 0)
    assert a.latency is not None and a.latency.total == 4
    assert (a.latency.count_above(10.0), a.latency.count_above(250.0)) == (2, 2)
    assert a.latency.count_above(2000.0) == 1
    assert (a.p50_ms, a.p99_ms) == (300.0, 2500.0)  # from the window: the last 3 requests
    assert (stats[B].requests, stats[B].status_5xx, stats[B].p50_ms) == (1, 1, None)
    assert stats["x:1"].requests == 1 and stats["x:1"].p50_ms is None  # out of the window
    idle = stats["idle:1"]
    assert idle.requests == 0 and idle.latency is not None and idle.latency.total == 0
    traffic.save(state)

    # a new object (another process) goes on from the saved counters
    traffic = caddy._TrafficState.load(state)
    traffic.ingest(log)  # nothing new
    assert traffic.tallies["r"][A].requests == 4
    with log.open("a") as handle:
        handle.write(_line("r", A, 200, 0.001))
    traffic.ingest(log)
    assert traffic.stats("r", [A])[A].requests == 5

    # only registered backends and routes are kept; a removed one is forgotten
    traffic.keep_only({"r": [A, B]})
    assert set(traffic.tallies) == {"r"} and set(traffic.tallies["r"]) == {A, B}
    assert set(traffic.recent) == {"r"}
    traffic.forget("r", A)
    assert set(traffic.tallies["r"]) == {B} and all(a != A for a, _ in traffic.recent["r"].rows())

    inode = log.stat().st_ino
    log.write_text(_line("r", B))  # truncated and rewritten in place
    assert log.stat().st_ino == inode
    traffic.ingest(log)
    assert traffic.tallies["r"][B].requests == 2


def test_traffic_state_of_an_older_version_or_damaged_starts_over(tmp_path: Path) -> None:
    log = tmp_path / "access-prod.log"
    log.write_text(_line("r", A) * 2)
    state = tmp_path / "traffic-prod.json"
    for saved in (
        {"version": 1, "inode": log.stat().st_ino, "offset": 0, "routes": {"r": [[A, 200, 1]]}},
        {"version": 2, "recent": {"r": {"addresses": [], "index": "AAAA", "ms": ""}}},
    ):
        state.write_text(json.dumps(saved))
        traffic = caddy._TrafficState.load(state)
        assert traffic.position.inode is None and traffic.tallies == {}
        traffic.ingest(log)
        assert traffic.tallies["r"][A].requests == 2


def test_bootstrap_config_and_command_line(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "home")
    config = bootstrap_config(paths.caddy_admin_socket)
    assert config["admin"]["listen"] == f"unix/{paths.caddy_admin_socket}"
    assert config["apps"]["http"]["servers"] == {}
    assert "http.log.access" in config["logging"]["logs"]["default"]["exclude"]
    env = caddy_env(paths)
    assert set(env) == {"XDG_DATA_HOME", "XDG_CONFIG_HOME"}
    assert all(Path(v).is_relative_to(paths.caddy_dir) for v in env.values())
    assert autosave_path(paths).is_relative_to(paths.caddy_dir)

    written = write_bootstrap_config(paths)
    assert json.loads(written.read_text()) == config
    argv = caddy_argv(paths)
    assert Path(argv[0]).name == "caddy"
    assert argv[1:] == ["run", "--config", str(written), "--resume"]
    checked = subprocess.run(
        [argv[0], "validate", "--config", str(written)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr

    # an autosave from another home keeps its routes but gets our admin socket
    autosave_path(paths).parent.mkdir(parents=True)
    autosave_path(paths).write_text(
        json.dumps({"admin": {"listen": "unix//elsewhere.sock"}, "apps": {"http": {}}})
    )
    write_bootstrap_config(paths)
    saved = json.loads(autosave_path(paths).read_text())
    assert saved == {"admin": config["admin"], "apps": {"http": {}}}
