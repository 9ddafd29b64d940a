"""HttpSource against a real HTTP server; json_path on its own."""

from __future__ import annotations

import asyncio
import time

import pytest

from conveyor.sources import HttpSource, MetricSourceError, json_path
from tests.sources.conftest import Route, Server, free_port

DOCUMENT = {
    "data": {"error_rate": 0.012, "as_text": "0.5", "label": "high", "missing": None},
    "items": [{"value": 1}, {"value": 2.5}],
}


def read(url: str, path: str = "", **kwargs: object) -> float:
    return asyncio.run(HttpSource(url, path, **kwargs).read())  # type: ignore[arg-type]


def error(url: str, path: str = "", **kwargs: object) -> str:
    with pytest.raises(MetricSourceError) as caught:
        read(url, path, **kwargs)
    return caught.value.message


def test_values_at_paths(http_server: Server) -> None:
    http_server.routes["/stats"] = Route.json(DOCUMENT)
    http_server.routes["/bare"] = Route.json(42)
    url = f"{http_server.base}/stats"
    assert read(url, "data.error_rate") == 0.012
    assert read(url, "data.as_text") == 0.5
    assert read(url, "items.0.value") == 1.0
    assert read(url, "items.-1.value") == 2.5
    assert read(f"{http_server.base}/bare") == 42.0


def test_what_is_missing_is_named(http_server: Server) -> None:
    http_server.routes["/stats"] = Route.json(DOCUMENT)
    url = f"{http_server.base}/stats"
    head = f"GET {url}"
    assert error(url, "data.errors") == (
        f'{head}: data.errors: no key "errors" in "data" (its keys: as_text, error_rate, label,'
        f" missing)"
    )
    assert (
        error(url, "stats")
        == f'{head}: stats: no key "stats" in the document (its keys: data, items)'
    )
    assert (
        error(url, "items.2.value")
        == f'{head}: items.2.value: no item 2 in "items", a list of 2 items'
    )
    assert error(url, "items.first") == (
        f'{head}: items.first: "first" is not an index, and "items" is a list of 2 items'
    )
    assert error(url, "data.error_rate.x") == (
        f'{head}: data.error_rate.x: "data.error_rate" is a float, not an object or a list to'
        f' find "x" in'
    )
    assert error(url, "data.label") == f'{head}: data.label: expected a number, got "high"'
    assert error(url, "data.missing") == f"{head}: data.missing: expected a number, got null"
    assert error(url, "data") == f"{head}: data: expected a number, got an object"
    assert error(url) == f"{head}: expected a number, got an object"


def test_bad_answers(http_server: Server) -> None:
    base = http_server.base
    http_server.routes["/down"] = Route(503, b"database   unreachable\n", "text/plain")
    http_server.routes["/page"] = Route(200, b"<html>hi</html>", "text/html")
    http_server.routes["/empty"] = Route(200, b"")
    http_server.routes["/moved"] = Route(302, b"", location="/stats")
    assert (
        error(f"{base}/down")
        == f"GET {base}/down: HTTP 503 Service Unavailable: database unreachable"
    )
    assert error(f"{base}/nope") == f"GET {base}/nope: HTTP 404 Not Found: no such page"
    assert error(f"{base}/page") == f"GET {base}/page: the answer is not JSON: <html>hi</html>"
    assert error(f"{base}/empty") == f"GET {base}/empty: the answer is not JSON: an empty body"
    assert error(f"{base}/moved") == (
        f"GET {base}/moved: HTTP 302 Found (redirects are not followed), location: /stats"
    )


def test_unreachable_and_timeout(http_server: Server) -> None:
    url = f"http://127.0.0.1:{free_port()}/stats"
    assert error(url) == f"GET {url}: connection refused"
    http_server.routes["/slow"] = Route.json(1, delay=60)  # until the test ends
    start = time.monotonic()
    assert error(f"{http_server.base}/slow", timeout=0.3) == (
        f"GET {http_server.base}/slow: timed out after 0.3 s"
    )
    assert time.monotonic() - start < 15  # the timeout cut the minute short


def test_headers_are_sent_and_never_shown(http_server: Server) -> None:
    token = "Bearer s3cr3t-t0ken"
    http_server.routes["/stats"] = Route.json({"v": 3})
    # A server that echoes the credentials it refused.
    http_server.routes["/private"] = Route(401, f"bad token {token}".encode(), "text/plain")
    source = HttpSource(
        f"{http_server.base}/stats", "v", {"Authorization": token, "X-Team": "shop"}
    )
    assert asyncio.run(source.read()) == 3.0
    _, headers = http_server.requests[-1]
    assert headers["Authorization"] == token
    assert headers["X-Team"] == "shop"
    assert headers["Accept"] == "application/json"
    assert token not in repr(source) and "s3cr3t" not in repr(source)

    message = error(f"{http_server.base}/private", headers={"Authorization": token})
    assert message == f"GET {http_server.base}/private: HTTP 401 Unauthorized: bad token <redacted>"
    # The token alone, echoed without "Bearer"; a short value is left alone.
    http_server.routes["/private"] = Route(502, b"rejected s3cr3t-t0ken for team 2", "text/plain")
    message = error(f"{http_server.base}/private", headers={"Authorization": token, "X-Team": "2"})
    assert message == (
        f"GET {http_server.base}/private: HTTP 502 Bad Gateway: rejected <redacted> for team 2"
    )
    url = f"http://user:hunter2@127.0.0.1:{free_port()}/stats"
    message = error(url, headers={"Authorization": token})
    assert "hunter2" not in message and "s3cr3t" not in message
    assert message.startswith("GET http://127.0.0.1:")


def test_a_redacted_header_is_refused(http_server: Server) -> None:
    http_server.routes["/stats"] = Route.json(1)
    url = f"{http_server.base}/stats"
    assert error(url, headers={"Authorization": "<redacted>"}) == (
        f"GET {url}: header Authorization was redacted in a recorded spec; read the metric"
        f" with the spec from the configuration"
    )
    assert http_server.requests == []


def test_json_path() -> None:
    assert json_path([1, [2, {"a": 3}]], "1.1.a") == 3
    assert json_path({"a": 1}, "") == {"a": 1}
    with pytest.raises(ValueError, match=r'no key "b" in "a" \(it is empty\)'):
        json_path({"a": {}}, "a.b")
