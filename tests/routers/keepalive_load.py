"""Keep-alive HTTP load in its own process: `python keepalive_load.py URL CLIENTS`.

Runs CLIENTS threads, each an httpx client with one keep-alive connection,
sending GET URL in a loop. Prints `ready` once requests flow, and a JSON
summary when stdin is closed. In its own process so that the load and the
code under test do not share a GIL.

A GET whose connection fails before any byte of the response is retried on a
new connection, as an HTTP client may do for an idempotent request (RFC 9110
§9.2.2, RFC 9112 §9.3.1); the retries are counted apart for reused keep-alive
connections (what browsers and Go's net/http retry) and for new ones.
Anything else is a failure: an error after the response started, a status
other than 200, no response after ATTEMPTS tries.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from typing import Any

import httpx

ATTEMPTS = 3  # a retry may land on the old listener too, while Caddy swaps it


def main(url: str, clients: int) -> None:
    lock = threading.Lock()
    stop = threading.Event()
    ok: Counter[str] = Counter()
    failures: list[str] = []
    retried = Counter[str]()

    def worker() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                for attempt in range(1, ATTEMPTS + 1):
                    events: list[str] = []

                    def trace(name: str, info: Any, events: list[str] = events) -> None:
                        events.append(name)

                    try:
                        response = client.get(url, extensions={"trace": trace})
                    except httpx.TransportError as exc:
                        reused = not any("connect_tcp" in e for e in events)
                        answered = any("receive_response_headers.complete" in e for e in events)
                        with lock:
                            if attempt < ATTEMPTS and not answered:
                                kind = "reused" if reused else "new"
                                retried[f"{kind} connection, {type(exc).__name__}"] += 1
                                continue
                            failures.append(
                                f"{'reused' if reused else 'new'} connection, attempt {attempt}: "
                                f"{type(exc).__name__}: {exc}"
                            )
                        break
                    with lock:
                        if response.status_code == 200:
                            ok[str(response.json()["name"])] += 1
                        else:
                            failures.append(f"HTTP {response.status_code}: {response.text[:200]}")
                    break

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    while sum(ok.values()) < 20 and not failures and all(t.is_alive() for t in threads):
        stop.wait(0.01)
    print("ready", flush=True)
    sys.stdin.read()
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    summary = {
        "ok": sum(ok.values()),
        "per_backend": dict(ok),
        "failures": failures,
        "retried": dict(retried),
        "retried_on_reused_connection": sum(
            n for k, n in retried.items() if k.startswith("reused")
        ),
        "retried_on_new_connection": sum(n for k, n in retried.items() if k.startswith("new")),
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
