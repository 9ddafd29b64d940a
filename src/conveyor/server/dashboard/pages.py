"""The dashboard's pages: server-rendered HTML over the same data as the API.

Every page needs a signed-in session (`/login`: a token typed once); without one the
browser is sent to the log-in page, and a role that may not see a page gets 403. The
buttons post to routes that call the API's own handlers (same checks, same audit),
after a confirmation page; every form carries the session's CSRF secret.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from conveyor.errors import ConveyorError
from conveyor.server import access, tokens
from conveyor.server.access import Action
from conveyor.server.dashboard import chart
from conveyor.server.dashboard.journal import (
    BUTTONS,
    Journal,
    buttons,
    possible,
    read_journal,
    timeline,
)
from conveyor.server.dashboard.sessions import COOKIE, LOGIN_COOKIE, same, set_cookie
from conveyor.server.dashboard.web import (
    HERE,
    Forbidden,
    LoginNeeded,
    NotFound,
    allow,
    error_page,
    page,
    session_token,
    sessions_of,
    signed_in,
    to_login,
)
from conveyor.store.records import TokenRecord

STATIC = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
HISTORY_LIMIT = 50


async def form_of(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (the first value of each), at most 64 KiB of it."""
    body = await request.body()
    if len(body) > 65536:
        return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in fields.items() if values}


def _safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server only."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/environments"


def _control(request: Request) -> Any:
    return request.app.state.control


def _environments(rt: Any, token: TokenRecord) -> list[str]:
    return access.visible(token, list(rt.loaded.config.environments))


def _deployment(request: Request, token: TokenRecord, deployment_id: str) -> Any:
    deployment = _control(request).store.get_deployment(deployment_id)
    if deployment is None:
        allow(request, token, Action.READ, None)
        raise NotFound(f'unknown deployment "{deployment_id}"')
    allow(request, token, Action.READ, deployment.environment)
    return deployment


def _api_endpoint(app: FastAPI, method: str, path: str) -> Callable[..., Any]:
    """The API's own handler of `method path`: a button does exactly what the API does."""
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path == path and method in (route.methods or ()):
            return route.endpoint
    raise LookupError(f"no API route {method} {path}")


def pages_router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/")
    def home(request: Request) -> Response:
        signed = session_token(request) is not None
        return RedirectResponse("/environments" if signed else "/login", status_code=303)

    @r.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            raise NotFound(f'no file "{name}"')
        return FileResponse(
            HERE / "static" / name,
            media_type=STATIC[name],
            headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    # -- logging in ------------------------------------------------------------

    def login_page(request: Request, error: str | None, status_code: int, target: str) -> Response:
        # one secret per browser (several log-in tabs share it) until it logs in
        secret = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
        response = page(
            request,
            "login.html",
            None,
            None,
            status_code=status_code,
            error=error,
            login_csrf=secret,
            next=target,
        )
        set_cookie(request, response, LOGIN_COOKIE, secret, max_age=3600)
        return response

    @r.get("/login")
    def login_form(request: Request, next: str | None = None) -> Response:
        if session_token(request) is not None:
            return RedirectResponse(_safe_next(next), status_code=303)
        return login_page(request, None, 200, _safe_next(next))

    @r.post("/login")
    async def login(request: Request) -> Response:
        form = await form_of(request)
        target = _safe_next(form.get("next"))
        if not same(request.cookies.get(LOGIN_COOKIE), form.get("csrf")):
            return login_page(request, "The form had expired: log in again.", 403, target)
        presented = form.get("token", "").strip()
        store = _control(request).store
        try:
            record = await asyncio.to_thread(
                lambda: tokens.valid(
                    store.find_token(tokens.token_hash(presented)) if presented else None,
                    presented,
                    datetime.now(UTC),
                )
            )
        except tokens.TokenRejected:
            return login_page(
                request,
                "That token is not valid (unknown, revoked or expired). "
                "Make one with: conveyor tokens create --name NAME --role ROLE",
                401,
                target,
            )
        sid, _ = sessions_of(request).open(record.token_hash)
        response = RedirectResponse(target, status_code=303)
        set_cookie(request, response, COOKIE, sid, max_age=int(sessions_of(request).lifetime_s))
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    @r.post("/logout")
    async def logout(request: Request) -> Response:
        form = await form_of(request)
        found = session_token(request)
        if found is not None and same(found[1].csrf, form.get("csrf")):
            sessions_of(request).close(request.cookies.get(COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- reading ---------------------------------------------------------------

    @r.get("/environments")
    def environments(request: Request) -> Response:
        from conveyor.cli.inspect import full_status_report

        token, session = signed_in(request)
        allow(request, token, Action.READ, None)
        rt = _control(request).runtime(token.name)
        report = asyncio.run(full_status_report(rt, _environments(rt, token)))
        return page(
            request, "environments.html", token, session, active="environments", report=report
        )

    @r.get("/environments/{environment}")
    def environment(request: Request, environment: str) -> Response:
        from conveyor.cli.inspect import full_status_report, history_json

        token, session = signed_in(request)
        allow(request, token, Action.READ, environment)
        rt = _control(request).runtime(token.name)
        if environment not in rt.loaded.config.environments:
            raise NotFound(f'unknown environment "{environment}"')
        report = asyncio.run(full_status_report(rt, [environment]))
        history = history_json(rt, environment, HISTORY_LIMIT)
        return page(
            request,
            "environment.html",
            token,
            session,
            active="environments",
            env=report["environments"][0],
            history=history,
        )

    @r.get("/deployments/{deployment_id}")
    def deployment(request: Request, deployment_id: str) -> Response:
        token, session = signed_in(request)
        record = _deployment(request, token, deployment_id)
        return page(
            request,
            "deployment.html",
            token,
            session,
            active="environments",
            **deployment_context(_control(request).store, token, record),
        )

    @r.get("/pipeline")
    def pipeline(request: Request) -> Response:
        from conveyor.cli.pipeline import run_json

        token, session = signed_in(request)
        allow(request, token, Action.READ, None)
        runs = [run_json(run) for run in _control(request).store.list_pipeline_runs(limit=50)]
        return page(request, "pipeline.html", token, session, active="pipeline", runs=runs)

    @r.get("/dora")
    def dora(request: Request, since: str = "30d") -> Response:
        from conveyor.cli.dora import dora_json, dora_rows, since_start

        token, session = signed_in(request)
        allow(request, token, Action.READ, None)
        rt = _control(request).runtime(token.name)
        until = datetime.now(UTC)
        try:
            start = since_start(since[:64], until)
        except ConveyorError as exc:
            return error_page(request, 400, exc.message)
        keys = []
        for name in _environments(rt, token):
            data = dora_json(rt, name, start, until)
            keys.append({"environment": name, "rows": dora_rows(data)})
        return page(
            request,
            "dora.html",
            token,
            session,
            active="dora",
            since=since[:64],
            start=start,
            until=until,
            keys=keys,
        )

    @r.get("/alerts")
    def alerts(request: Request) -> Response:
        from conveyor.server.dashboard.alerts import alerts_view

        token, session = signed_in(request)
        allow(request, token, Action.READ, None)
        rt = _control(request).runtime(token.name)
        view = alerts_view(_control(request), _environments(rt, token))
        return page(request, "alerts.html", token, session, active="alerts", view=view)

    # -- the buttons -----------------------------------------------------------

    def checked(request: Request, token: TokenRecord, deployment_id: str, action: str) -> Any:
        """The deployment, when `action` is one of its buttons that `token` may press."""
        record = _deployment(request, token, deployment_id)
        if action not in BUTTONS:
            raise NotFound(f'no action "{action}"')
        allow(request, token, BUTTONS[action][0], record.environment)
        store = _control(request).store
        unfinished, latest = _current(store, record.environment)
        if action not in possible(record, unfinished, latest):
            raise Forbidden(
                f"{action} is not possible now: deployment {record.id} is "
                f"{record.status.replace('_', ' ')}"
            )
        return record

    @r.get("/deployments/{deployment_id}/confirm/{action}")
    def confirm(request: Request, deployment_id: str, action: str) -> Response:
        token, session = signed_in(request)
        record = checked(request, token, deployment_id, action)
        _, label, danger, explains = BUTTONS[action]
        return page(
            request,
            "confirm.html",
            token,
            session,
            active="environments",
            deployment=record,
            action=action,
            label=label,
            danger=danger,
            explains=explains,
        )

    @r.post("/deployments/{deployment_id}/{action}")
    async def act(request: Request, deployment_id: str, action: str) -> Response:
        form = await form_of(request)
        return await asyncio.to_thread(acted, request, deployment_id, action, form)

    def acted(request: Request, deployment_id: str, action: str, form: dict[str, str]) -> Response:
        token, session = signed_in(request)
        if not same(session.csrf, form.get("csrf")):
            raise Forbidden("forbidden: the form's CSRF check failed (reload the page)")
        record = checked(request, token, deployment_id, action)
        outcome, goes_to = press(request, token, record, action, form.get("message") or None)
        sessions_of(request).flash(request.cookies.get(COOKIE), outcome)
        return RedirectResponse(f"/deployments/{goes_to}", status_code=303)

    return r


def _current(store: Any, environment: str) -> tuple[str | None, str | None]:
    unfinished = store.unfinished_deployment(environment)
    latest = store.list_deployments(environment, limit=1)
    return (unfinished.id if unfinished else None, latest[0].id if latest else None)


def summary_context(store: Any, token: TokenRecord, journal: Journal) -> dict[str, Any]:
    """The deployment page's header: the deployment, its approvals, the token's buttons."""
    record = journal.deployment
    unfinished, latest = _current(store, record.environment)
    return {
        "deployment": record,
        "buttons": buttons(token, record, unfinished, latest),
        "approvals": journal.approvals,
        "finished": journal.finished,
    }


def charts_of(journal: Journal) -> list[str]:
    """The SVG chart of each analysis run of the journal."""
    return [chart.svg(s) for s in chart.series_of_analyses(journal.analyses)]


def deployment_context(store: Any, token: TokenRecord, record: Any) -> dict[str, Any]:
    """What the deployment page shows (its live stream then updates it)."""
    journal = read_journal(store, record)
    return {
        **summary_context(store, token, journal),
        "entries": timeline(journal),
        "charts": charts_of(journal),
    }


def press(
    request: Request, token: TokenRecord, record: Any, action: str, message: str | None
) -> tuple[str, str]:
    """Do `action` through the API's handler: (what happened, the deployment to show)."""
    from conveyor.server.app import ApiError, MessageBody, PromoteBody, RollbackBody

    env, app = record.environment, request.app
    calls: dict[str, tuple[str, str, tuple[Any, ...]]] = {
        "approve": (
            "POST",
            "/api/deployments/{deployment_id}/approve",
            (record.id, MessageBody(message=message)),
        ),
        "reject": (
            "POST",
            "/api/deployments/{deployment_id}/reject",
            (record.id, MessageBody(message=message)),
        ),
        "promote": ("POST", "/api/environments/{environment}/promote", (env, PromoteBody())),
        "pause": ("POST", "/api/environments/{environment}/pause", (env,)),
        "resume": ("POST", "/api/environments/{environment}/resume", (env,)),
        "abort": (
            "POST",
            "/api/environments/{environment}/abort",
            (env, MessageBody(message=message)),
        ),
        "rollback": (
            "POST",
            "/api/environments/{environment}/rollback",
            (env, RollbackBody(message=message)),
        ),
    }
    method, path, args = calls[action]
    handler = _api_endpoint(app, method, path)
    try:
        answer = handler(request, token, *args)
    except ApiError as exc:
        request.state.outcome = exc.message
        return f"{action} refused: {exc.message}", record.id
    except ConveyorError as exc:
        request.state.outcome = exc.message
        hint = f" ({exc.hint})" if exc.hint else ""
        return f"{action} refused: {exc.message}{hint}", record.id
    body: Any = answer if isinstance(answer, dict) else json.loads(bytes(answer.body) or b"null")
    if isinstance(body, dict) and "approval" in body:
        return f"{action}: {body['approval']}", record.id
    if isinstance(body, dict) and "id" in body and "status" in body:
        status = str(body["status"]).replace("_", " ")
        return f"{action}: deployment {body['id']} {status}", str(body["id"])
    return f"{action}: nothing to do", record.id


def install(app: FastAPI) -> None:
    """Add the dashboard and the live stream to the API's app."""
    from conveyor.server.dashboard.sessions import Sessions
    from conveyor.server.events import events_router

    app.state.sessions = Sessions()
    app.include_router(events_router())
    app.include_router(pages_router())

    @app.exception_handler(LoginNeeded)
    async def _login(request: Request, exc: Exception) -> Response:
        return to_login(request)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        request.state.outcome = exc.message
        return await asyncio.to_thread(error_page, request, 403, exc.message)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> Response:
        request.state.outcome = exc.message
        return await asyncio.to_thread(error_page, request, 404, exc.message)
