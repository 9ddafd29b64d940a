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
    percentile,
    with_backends,
)
from conveyor.routers.caddy_process import (
    autosave_path,
    bootstrap_config,
    caddy_argv,
    caddy_env,
    write_bootstrap_config,
)

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


def test_traffic_window_reads_incrementally_and_follows_a_roll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(caddy, "TRAFFIC_WINDOW", 3)
    log = tmp_path / "access-prod.log"
    state = tmp_path / "traffic-prod.json"
    log.write_text(_line("r", f"tcp/{A}") + _line("r", "", 503) + '{"status": 2')
    window = caddy._TrafficWindow.load(state)
    window.ingest(log)
    assert list(window.routes["r"]) == [(A, 200, 10.0)]  # 503 without upstream skipped
    window.save(state)

    # the half-written line completes, one more line, then Caddy rolls the file
    with log.open("a") as handle:
        handle.write('00, "duration": 0.5, "conveyor_route": "r", "upstream": "x:1"}\n')
        handle.write(_line("r", B, 500, 0.002))
    log.rename(tmp_path / "access-prod-2026-01-01T00-00-00.000.log")
    log.write_text(_line("r", A, 302) + _line("other", B))

    window = caddy._TrafficWindow.load(state)
    window.ingest(log)
    assert list(window.routes["r"]) == [("x:1", 200, 500.0), (B, 500, 2.0), (A, 302, 10.0)]
    assert list(window.routes["other"]) == [(B, 200, 10.0)]
    assert window.offset == log.stat().st_size

    window.ingest(log)  # nothing new
    assert len(window.routes["r"]) == 3
    inode = log.stat().st_ino
    log.write_text(_line("r", B))  # truncated and rewritten in place
    assert log.stat().st_ino == inode
    window.ingest(log)
    assert list(window.routes["r"])[-1] == (B, 200, 10.0)


def test_bootstrap_config_and_command_line(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "home")
    config = bootstrap_config(paths)
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
