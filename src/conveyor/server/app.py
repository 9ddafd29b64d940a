"""The HTTP API of `conveyor server` (FastAPI).

Every route under `/api/` needs `Authorization: Bearer TOKEN` (`conveyor tokens`):
401 without a valid one, 403 when its role or environments do not allow the
request (`conveyor.server.access`). What it answers is what the CLI's `--json`
prints, masked by the redaction registry. Errors are `{"error", "hint"}`: a
`ConveyorError`'s message, or for anything unexpected a generic message (the
traceback goes to the server's log only). Every request that changes something is
written to the audit with the token's name, whatever its answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from conveyor.errors import (
    ConfigError,
    ConveyorError,
    LockHeldError,
    StateError,
    UnfinishedDeploymentError,
    UsageError,
)
from conveyor.redaction import redact_registered
from conveyor.server import access, tokens
from conveyor.server.access import Action
from conveyor.server.audit import audit_json, record_audit
from conveyor.server.operations import Announce, Answer, answer, launch
from conveyor.store.records import TokenRecord

log = logging.getLogger("conveyor.server")

Name = Annotated[str, Field(min_length=1, max_length=255)]
Message = Annotated[str, Field(max_length=2000)]


class ApiError(Exception):
    """An answer other than 2xx that the API gives on purpose."""

    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.hint = hint


class Masked(JSONResponse):
    """JSON with every registered secret masked (`conveyor.redaction`)."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, default=_json_default)
        return redact_registered(text).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        from conveyor.cli.output import iso

        return iso(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


class ErrorBody(BaseModel):
    """Every answer that is not a success."""

    error: str = Field(description="What went wrong (a ConveyorError's message).")
    hint: str | None = Field(None, description="What to do about it.")


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": what}
    for status, what in (
        (400, "The request names something that does not exist or is malformed"),
        (401, "No valid token: missing, unknown, revoked or expired"),
        (403, "The token's role or environments do not allow it"),
        (404, "No such environment or deployment"),
        (409, "The state does not allow it (refused, unfinished, locked)"),
        (422, "The request does not match this document"),
        (500, "Unexpected: the server's log has the details"),
    )
}


class DeployBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    releases: dict[Name, Name] = Field(
        default_factory=dict,
        description="service -> release id to deploy; the newest release of the others",
    )
    message: Message | None = Field(None, description="Why (kept in the history).")


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: list[Name] = Field(
        default_factory=list,
        max_length=100,
        description="RELEASE or SERVICE=RELEASE (default: the previous successful set)",
    )
    message: Message | None = None


class PromoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    full: bool = Field(False, description="Skip every remaining step: all traffic now.")


class MessageBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: Message | None = None


@dataclass
class Control:
    """What the server holds: where the project is, its store (opened once)."""

    config_path: Path | None
    _store: Any = None

    def loaded(self, defer_unset: bool = True) -> Any:
        from conveyor.config import load_config

        return load_config(self.config_path, defer_unset=defer_unset)

    @property
    def store(self) -> Any:
        if self._store is None:
            from conveyor.paths import Paths
            from conveyor.store import open_store

            paths = Paths.for_project(self.loaded().root).ensure()
            url = os.environ.get("CONVEYOR_STATE_URL") or f"sqlite:///{paths.state_db}"
            self._store = open_store(url)
        return self._store

    def runtime(self, user: str, defer_unset: bool = True) -> Any:
        """A runtime acting as `user` (the token's name), on the server's store."""
        from conveyor.engine.runtime import Runtime
        from conveyor.paths import Paths

        loaded = self.loaded(defer_unset)
        return Runtime(loaded, Paths.for_project(loaded.root).ensure(), self.store, user)


_bearer = HTTPBearer(auto_error=False, description="An API token: conveyor tokens create")


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenRecord:
    """The token of the request: 401 unless it is known, not revoked and not expired."""
    control: Control = request.app.state.control
    try:
        presented = tokens.bearer(
            None if credentials is None else f"Bearer {credentials.credentials}"
        )
        now = datetime.now(UTC)
        record = tokens.valid(
            control.store.find_token(tokens.token_hash(presented)), presented, now
        )
    except tokens.TokenRejected as rejected:
        log.info("401 %s %s: %s", request.method, request.url.path, rejected.reason)
        raise ApiError(
            401, "a valid API token is required", "send Authorization: Bearer TOKEN"
        ) from None
    if record.last_used_at is None or now - record.last_used_at >= tokens.TOUCH_EVERY:
        control.store.update_token(record.name, last_used_at=now)
    request.state.token = record
    return record


Caller = Annotated[TokenRecord, Depends(caller)]


def _status_of(error: ConveyorError) -> int:
    if isinstance(error, UsageError | ConfigError):
        return 400
    if isinstance(error, StateError):
        return 503
    if isinstance(error, LockHeldError | UnfinishedDeploymentError):
        return 409
    return 409  # refused or failed: the state does not allow it (the message says why)


def create_app(config_path: Path | None) -> FastAPI:
    """The API of the project at `config_path` (None: found from the working directory)."""
    control = Control(config_path)
    app = FastAPI(
        title="Conveyor",
        description="The control plane of a Conveyor project (conveyor server).",
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
        default_response_class=Masked,
        responses=ERRORS,
    )
    app.state.control = control

    def error(request: Request, status: int, message: str, hint: str | None = None) -> Response:
        request.state.outcome = message
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return Masked({"error": message, "hint": hint}, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return error(request, exc.status, exc.message, exc.hint)

    @app.exception_handler(ConveyorError)
    async def _conveyor_error(request: Request, exc: ConveyorError) -> Response:
        return error(request, _status_of(exc), exc.message, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            f"{'/'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in exc.errors()
        ]
        return error(request, 422, "invalid request: " + "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return error(request, exc.status_code, str(exc.detail))

    @app.middleware("http")
    async def _audit_and_guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        try:
            response = await call_next(request)
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            response = error(request, 500, "internal error: the server's log has the details", None)
        token: TokenRecord | None = getattr(request.state, "token", None)
        if request.method not in ("GET", "HEAD", "OPTIONS") and token is not None:
            await asyncio.to_thread(
                record_audit,
                control.store,
                token,
                request.method,
                request.url.path,
                response.status_code,
                request.state,
            )
        return response

    def allow(
        request: Request, token: TokenRecord, action: Action, environment: str | None
    ) -> None:
        request.state.environment = environment
        why = access.refusal(token, action, environment)
        if why is not None:
            raise ApiError(403, f"forbidden: {why}")

    def environment_of(rt: Any, environment: str) -> None:
        if environment not in rt.loaded.config.environments:
            raise ApiError(404, f'unknown environment "{environment}"')

    def deployment_of(
        request: Request, token: TokenRecord, deployment_id: str, action: Action
    ) -> Any:
        deployment = control.store.get_deployment(deployment_id)
        if deployment is None:
            allow(request, token, action, None)
            raise ApiError(404, f'unknown deployment "{deployment_id}"')
        request.state.deployment_id = deployment_id
        allow(request, token, action, deployment.environment)
        return deployment

    # -- reading ------------------------------------------------------------------

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Whether the server answers (no token needed)."""
        return {"status": "ok"}

    @app.get("/api/environments", tags=["read"])
    def environments(request: Request, token: Caller) -> dict[str, Any]:
        """`conveyor status --json` of the environments the token may see."""
        from conveyor.cli.inspect import full_status_report

        allow(request, token, Action.READ, None)
        rt = control.runtime(token.name)
        names = access.visible(token, list(rt.loaded.config.environments))
        report: dict[str, Any] = asyncio.run(full_status_report(rt, names))
        return report

    @app.get("/api/environments/{environment}", tags=["read"])
    def environment(request: Request, token: Caller, environment: str) -> dict[str, Any]:
        """`conveyor status ENV --json`."""
        from conveyor.cli.inspect import full_status_report

        allow(request, token, Action.READ, environment)
        rt = control.runtime(token.name)
        environment_of(rt, environment)
        report: dict[str, Any] = asyncio.run(full_status_report(rt, [environment]))
        return report

    @app.get("/api/environments/{environment}/deployments", tags=["read"])
    def history(
        request: Request,
        token: Caller,
        environment: str,
        limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    ) -> Any:
        """`conveyor history ENV --json`: deployments, newest first, and one-off runs."""
        from conveyor.cli.inspect import history_json

        allow(request, token, Action.READ, environment)
        rt = control.runtime(token.name)
        environment_of(rt, environment)
        return history_json(rt, environment, limit)

    @app.get("/api/environments/{environment}/dora", tags=["read"])
    def dora(
        request: Request,
        token: Caller,
        environment: str,
        since: Annotated[str, Query(max_length=64)] = "30d",
    ) -> dict[str, Any]:
        """`conveyor dora ENV --json`: the four DORA keys."""
        from conveyor.cli.dora import dora_json, since_start

        allow(request, token, Action.READ, environment)
        rt = control.runtime(token.name)
        environment_of(rt, environment)
        until = datetime.now(UTC)
        return dora_json(rt, environment, since_start(since, until), until)

    @app.get("/api/deployments/{deployment_id}", tags=["read"])
    def explain(request: Request, token: Caller, deployment_id: str) -> dict[str, Any]:
        """`conveyor explain ID --json`: the steps, measurements and verdicts."""
        from conveyor.engine.explain import explanation

        deployment_of(request, token, deployment_id, Action.READ)
        data: dict[str, Any] = explanation(control.store, deployment_id)
        return data

    @app.get("/api/audit", tags=["admin"])
    def audit(
        request: Request, token: Caller, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> list[dict[str, Any]]:
        """`conveyor audit --json`: the requests that changed something, newest first."""
        allow(request, token, Action.ADMIN, None)
        return [audit_json(a) for a in control.store.list_audit(limit)]

    # -- changing -----------------------------------------------------------------

    def operate(
        request: Request, rt: Any, environment: str, kind: str, work: Callable[[Announce], Any]
    ) -> Response:
        """Run `work` in the background; answer with its outcome, or 202."""
        started, done = launch(work, f"{kind} {environment} by {rt.user}")
        outcome: Answer = answer(started, done)
        if not outcome.ended:
            request.state.deployment_id = outcome.result
            request.state.outcome = f"accepted: deployment {outcome.result}"
            record = control.store.get_deployment(outcome.result)
            body = _deployment_json(record) if record else {"id": outcome.result}
            return Masked(body, status_code=202)
        return ended(request, outcome.result)

    def ended(request: Request, result: Any) -> Response:
        from conveyor.cli.deploy import proposal_json

        if result is None or not hasattr(result, "status"):  # a proposal: nothing to do
            request.state.outcome = "nothing to do"
            return Masked(proposal_json(result, dry_run=False) if result else None)
        request.state.deployment_id = result.id
        request.state.outcome = f"deployment {result.id}: {result.status}"
        return Masked(_deployment_json(result))

    def changing(request: Request, token: Caller, environment: str) -> Any:
        """The runtime for a change of `environment` by `token`, its secrets resolved."""
        allow(request, token, Action.DEPLOY, environment)
        rt = control.runtime(token.name, defer_unset=False)
        environment_of(rt, environment)
        rt.secrets(environment)  # refused before anything starts when one is missing
        return rt

    @app.post("/api/environments/{environment}/deploy", tags=["change"], status_code=202)
    def deploy(
        request: Request, token: Caller, environment: str, body: DeployBody | None = None
    ) -> Response:
        """Deploy the newest (or given) releases; 202 with the deployment to follow."""
        from conveyor.engine import deployments

        body = body or DeployBody()
        rt = changing(request, token, environment)
        target = {**deployments.newest_releases(rt, set(body.releases)), **body.releases}
        deployments.check_unfinished(rt, environment)
        deployment_id = deployments.new_deployment_id()

        async def work(announce: Announce) -> Any:
            await rt.ensure_platform(environment)
            proposal = await deployments.propose(rt, environment, target, migrate=True)
            if not proposal.plan.steps:
                return proposal
            announce(deployment_id)
            return await deployments.deploy(
                rt, proposal, reason=body.message, deployment_id=deployment_id
            )

        return operate(request, rt, environment, "deploy", work)

    @app.post("/api/environments/{environment}/rollback", tags=["change"], status_code=202)
    def rollback(
        request: Request, token: Caller, environment: str, body: RollbackBody | None = None
    ) -> Response:
        """Redeploy the previous successful release set (or `to`)."""
        from conveyor.engine import deployments
        from conveyor.engine.rollback import rollback_target

        body = body or RollbackBody()
        rt = changing(request, token, environment)
        target = rollback_target(rt, environment, body.to)
        deployments.check_unfinished(rt, environment)
        deployment_id = deployments.new_deployment_id()

        async def work(announce: Announce) -> Any:
            await rt.ensure_platform(environment)
            flip = deployments.progressive(rt, environment) is not None
            proposal = await deployments.propose(rt, environment, target, flip=flip)
            if not proposal.plan.steps:
                return proposal
            announce(deployment_id)
            return await deployments.deploy(
                rt, proposal, kind="rollback", reason=body.message, deployment_id=deployment_id
            )

        return operate(request, rt, environment, "rollback", work)

    def on_unfinished(
        request: Request,
        token: TokenRecord,
        environment: str,
        kind: str,
        run: Callable[[Any], Awaitable[Any]],
    ) -> Response:
        """Run `run(rt)` on the environment's unfinished deployment."""
        rt = changing(request, token, environment)
        current = rt.store.unfinished_deployment(environment)
        if current is None:
            raise ApiError(409, f"{environment} has no unfinished deployment")

        async def work(announce: Announce) -> Any:
            announce(current.id)
            return await run(rt)

        return operate(request, rt, environment, kind, work)

    @app.post("/api/environments/{environment}/promote", tags=["change"], status_code=202)
    def promote(
        request: Request, token: Caller, environment: str, body: PromoteBody | None = None
    ) -> Response:
        """End the current pause or analysis of the rollout and go on (`full`: now)."""
        from conveyor.engine import deployments

        full = (body or PromoteBody()).full
        return on_unfinished(
            request,
            token,
            environment,
            "promote",
            lambda rt: deployments.promote(rt, environment, full=full),
        )

    @app.post("/api/environments/{environment}/pause", tags=["change"], status_code=202)
    def pause(request: Request, token: Caller, environment: str) -> Response:
        """Pause the running rollout where it is."""
        from conveyor.engine import deployments

        return on_unfinished(
            request, token, environment, "pause", lambda rt: deployments.pause(rt, environment)
        )

    @app.post("/api/environments/{environment}/resume", tags=["change"], status_code=202)
    def resume(request: Request, token: Caller, environment: str) -> Response:
        """Finish an interrupted or paused deployment from where it stopped."""
        from conveyor.engine import deployments

        return on_unfinished(
            request, token, environment, "resume", lambda rt: deployments.resume(rt, environment)
        )

    @app.post("/api/environments/{environment}/abort", tags=["change"], status_code=202)
    def abort(
        request: Request, token: Caller, environment: str, body: MessageBody | None = None
    ) -> Response:
        """Roll the unfinished deployment back to the releases that ran before it."""
        from conveyor.engine import deployments

        reason = (body or MessageBody()).message
        return on_unfinished(
            request,
            token,
            environment,
            "abort",
            lambda rt: deployments.abort(rt, environment, reason),
        )

    def decide(
        request: Request, token: TokenRecord, deployment_id: str, approve: bool, message: str
    ) -> dict[str, Any]:
        from conveyor.engine import approvals, deployments
        from conveyor.engine.unfinished import process_alive

        deployment_of(request, token, deployment_id, Action.APPROVE)
        rt = control.runtime(token.name, defer_unset=False)
        deployment, state = approvals.decide(rt, deployment_id, approve=approve, message=message)
        env = deployment.environment
        lock = rt.store.get_lock(env)
        waiting = lock is not None and lock.deployment_id == deployment_id and process_alive(lock)
        if not approve and not waiting:
            asyncio.run(deployments.finish_rejected(rt, env))
        request.state.outcome = f"{deployment_id}: {state.summary}"
        current = rt.store.get_deployment(deployment_id)
        return {
            "deployment": _deployment_json(current),
            "approval": state.summary,
            "approved": state.approved,
            "waiting": waiting,  # a deploy waits for the decision (else: resume to go on)
        }

    @app.post("/api/deployments/{deployment_id}/approve", tags=["change"])
    def approve(
        request: Request, token: Caller, deployment_id: str, body: MessageBody | None = None
    ) -> dict[str, Any]:
        """Approve a deployment that waits for approval (the four-eyes rule applies)."""
        return decide(request, token, deployment_id, True, (body or MessageBody()).message or "")

    @app.post("/api/deployments/{deployment_id}/reject", tags=["change"])
    def reject(
        request: Request, token: Caller, deployment_id: str, body: MessageBody | None = None
    ) -> dict[str, Any]:
        """Reject a deployment that waits for approval: it ends, nothing having changed."""
        return decide(request, token, deployment_id, False, (body or MessageBody()).message or "")

    from conveyor.server.metrics import add_metrics

    add_metrics(app, caller)  # GET /metrics: the Prometheus exposition

    from conveyor.server.dashboard.pages import install as install_dashboard

    install_dashboard(app)  # the web pages and the live stream of a deployment's journal
    return app


def _deployment_json(record: Any) -> dict[str, Any]:
    from conveyor.cli.deploy import deployment_json

    data: dict[str, Any] = deployment_json(record)
    return data
