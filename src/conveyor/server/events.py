"""Live updates of a deployment: `GET /api/deployments/{id}/events`, server-sent events.

The stream looks at the deployment's journal in the store every `POLL_S` (whoever
writes it: this server, a `conveyor deploy` in a terminal, a CI job) with one cheap
read (`Store.journal_mark`; with SQLite, only when the database's files changed);
when that changed, it reads the journal and sends what
changed since its last read:

- `entry` `{"key", "html"}`: a timeline entry, new or changed (`dashboard.journal`);
- `summary` `{"html"}`: the deployment's header and buttons, when its status changed;
- `charts` `{"html"}`: the analysis charts (inline SVG), when a measurement was added;
- `end` `{"status"}`: the deployment has finished and everything was sent; the stream
  closes.

It takes the API's bearer token or the dashboard's session cookie (a browser's
`EventSource` cannot send a header). A stream closes after `MAX_STREAM_S` (the browser
reconnects by itself and is sent everything again, which replaces what it has), so
that a stopping server is not held up for long by an open page.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from conveyor.redaction import redact_registered
from conveyor.server.access import Action, refusal
from conveyor.store.records import TokenRecord

POLL_S = 0.05  # how often the journal's mark is read: an event arrives at most this late
MEASURED = 7  # the measurements' part of `Store.journal_mark`
CHECK_ANYWAY_S = 2.0  # the journal's mark is read this often even when no file changed
KEEPALIVE_S = 15.0
MAX_STREAM_S = 300.0
RETRY_MS = 1000


def file_mark(store: Any) -> tuple[Any, ...] | None:
    """The size and time of the SQLite store's files (None for PostgreSQL): every write
    changes them, and a stat costs microseconds where a query costs milliseconds."""
    path = getattr(store, "state_file", None)
    if path is None:
        return None
    marks: list[tuple[int, int] | None] = []
    for name in (path, path.with_name(path.name + "-wal")):
        try:
            found = name.stat()
        except OSError:
            marks.append(None)
        else:
            marks.append((found.st_mtime_ns, found.st_size))
    return tuple(marks)


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event; the data is JSON, masked by the redaction registry."""
    text = redact_registered(json.dumps(data, ensure_ascii=False))
    return f"event: {event}\ndata: {text}\n\n".encode()


def reader(request: Request) -> TokenRecord:
    """The bearer token of the request or, without one, its dashboard session's (401)."""
    from fastapi.security import HTTPAuthorizationCredentials

    from conveyor.server.app import ApiError, caller
    from conveyor.server.dashboard.web import session_token

    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        credentials = HTTPAuthorizationCredentials(scheme=scheme, credentials=value.strip())
        return caller(request, credentials if value.strip() else None)
    found = session_token(request)
    if found is None:
        raise ApiError(401, "a valid API token is required", "send Authorization: Bearer TOKEN")
    request.state.token = found[0]
    return found[0]


async def updates(
    request: Request, token: TokenRecord, deployment_id: str, environment: str
) -> AsyncIterator[bytes]:
    """The events of one deployment's journal until it has finished (or the client left)."""
    from conveyor.server.dashboard.journal import read_journal, timeline
    from conveyor.server.dashboard.pages import charts_of, summary_context
    from conveyor.server.dashboard.web import fragment

    store = request.app.state.control.store
    sent: dict[str, str] = {}
    summary = charts = ""
    mark: tuple[Any, ...] | None = None
    seen: tuple[Any, ...] | None = None  # the files' mark when the journal was last read
    previous: tuple[Any, ...] | None = None  # the files' mark at the previous poll
    checked = 0.0
    yield f"retry: {RETRY_MS}\n\n".encode()
    started = last_sent = time.monotonic()
    while True:
        now = time.monotonic()
        if now - started > MAX_STREAM_S or await request.is_disconnected():
            return
        touched = file_mark(store)
        settled, previous = touched == previous, touched
        if touched is not None and touched == seen and now - checked < CHECK_ANYWAY_S:
            await asyncio.sleep(POLL_S)
            continue
        # A write changes the files before its commit is visible (SQLite updates its WAL
        # index last): files that just changed are read again at the next poll.
        seen, checked = (touched if settled else None), now
        new = await asyncio.to_thread(store.journal_mark, deployment_id, environment)
        if new == mark:
            if now - last_sent > KEEPALIVE_S:
                yield b": keep-alive\n\n"
                last_sent = now
            await asyncio.sleep(POLL_S)
            continue
        measured = mark is None or new[MEASURED] != mark[MEASURED] or new[0] != mark[0]
        mark = new
        record = await asyncio.to_thread(store.get_deployment, deployment_id)
        if record is None:
            return
        journal = await asyncio.to_thread(read_journal, store, record, measured)
        out: list[bytes] = []
        for entry in timeline(journal):
            html = fragment("_entry.html", entry=entry)
            if sent.get(entry.key) != html:
                sent[entry.key] = html
                out.append(sse("entry", {"key": entry.key, "html": html}))
        context = await asyncio.to_thread(summary_context, store, token, journal)
        html = fragment("_summary.html", **context)
        if html != summary:
            summary = html
            out.append(sse("summary", {"html": html}))
        if measured:
            html = fragment("_charts.html", charts=charts_of(journal))
            if html != charts:
                charts = html
                out.append(sse("charts", {"html": html}))
        for chunk in out:
            yield chunk
        last_sent = time.monotonic()
        if journal.finished:
            yield sse("end", {"status": record.status})
            return
        await asyncio.sleep(POLL_S)


def events_router() -> APIRouter:
    r = APIRouter()

    @r.get(
        "/api/deployments/{deployment_id}/events",
        tags=["read"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "The stream"}},
    )
    def events(request: Request, deployment_id: str) -> Response:
        """Server-sent events of the deployment's journal, live, until it has finished."""
        from conveyor.server.app import ApiError

        token = reader(request)
        record = request.app.state.control.store.get_deployment(deployment_id)
        environment = None if record is None else record.environment
        request.state.environment = environment
        why = refusal(token, Action.READ, environment)
        if why is not None:
            raise ApiError(403, f"forbidden: {why}")
        if record is None:
            raise ApiError(404, f'unknown deployment "{deployment_id}"')
        return StreamingResponse(
            updates(request, token, deployment_id, record.environment),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return r
