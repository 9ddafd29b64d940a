"""Monitors in the agent: rules and probes evaluated on their intervals, alerts acted on.

Every `monitors.interval` the router's counters of the environment's services are read
once (`Router.traffic_stats`, per backend address) and each rule judges its window of
them (`conveyor.monitors.window`), or reads its custom metric (`conveyor.sources`);
each probe runs its health check on its own interval, against the environment's URL
or each serving instance. The state machine (`conveyor.monitors.state`) turns the
readings into alerts; each change is written to the store (`AlertRecord`), so an agent
that restarts picks up where it was and announces nothing twice. A move to firing or
back is an event of the environment and a notification (`alert_firing`,
`alert_resolved`); `on_fire: rollback` also rolls back (`conveyor.monitors.actions`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from conveyor.analysis.metrics import ReleaseStats
from conveyor.monitors.rules import Measured, RuleExpr, measure
from conveyor.monitors.state import FIRING, AlertState, Transition, advance
from conveyor.monitors.window import CounterWindow
from conveyor.store.records import AlertRecord

if TYPE_CHECKING:
    from conveyor.checks.base import Check
    from conveyor.config.models import AlertRule, MonitorsConfig, Probe
    from conveyor.engine.runtime import Runtime
    from conveyor.sources import MetricSource

RULE = "rule"
PROBE = "probe"

Log = Callable[[str], None]


@dataclass
class Watched:
    """One rule or probe, and where its alert is."""

    name: str
    kind: str  # RULE | PROBE
    expression: str  # what fires it, for people
    hold: float
    on_fire: str
    state: AlertState = field(default_factory=AlertState)


def monitors_of(rt: Runtime, environment: str) -> MonitorsConfig | None:
    """The environment's `monitors:` when it has any rule or probe."""
    monitors = rt.environment(environment).monitors
    return None if monitors is None or monitors.empty else monitors


def probe_expression(probe: Probe) -> str:
    """What a probe checks, for people: `GET /health -> 200 on the url for 1m`."""
    from conveyor.config.durations import format_duration

    if probe.type == "http":
        what = f"GET {probe.path} -> {probe.expect_status}"
    elif probe.type == "tcp":
        what = "a TCP connection"
    else:
        command = probe.command
        what = command if isinstance(command, str) else " ".join(command or [])
    where = "the url" if probe.against == "url" else "each instance"
    hold = f" for {format_duration(probe.for_)}" if probe.for_ else ""
    return f"{what} fails on {where}{hold}"


class MonitorRunner:
    """The rules and probes of one environment, and their alerts."""

    def __init__(self, rt: Runtime, environment: str, log: Log) -> None:
        from conveyor.analysis.custom import parse_source
        from conveyor.sources import source_for

        config = monitors_of(rt, environment)
        assert config is not None
        self.rt = rt
        self.environment = environment
        self.log = log
        self.config = config
        self.rules: dict[str, tuple[AlertRule, RuleExpr]] = {
            name: (rule, rule.expression()) for name, rule in config.rules.items()
        }
        self.windows = {name: CounterWindow(rule.window) for name, rule in config.rules.items()}
        self.sources: dict[str, MetricSource] = {}
        for name, rule in config.rules.items():
            source = rule.source_dict()
            if source is not None:
                spec = parse_source(source)
                self.sources[name] = source_for(spec, cwd=rt.loaded.root, env=dict(os.environ))
        self.watched: dict[str, Watched] = {}
        for name, (rule, expr) in self.rules.items():
            self.watched[name] = Watched(name, RULE, str(expr), expr.hold, rule.on_fire)
        for name, probe in config.probes.items():
            self.watched[name] = Watched(
                name, PROBE, probe_expression(probe), probe.for_, probe.on_fire
            )
        self._tasks: set[asyncio.Task[None]] = set()
        self._acting: set[asyncio.Task[None]] = set()

    # -- the alerts' states, kept in the store ----------------------------------------

    def load(self) -> None:
        """Take the alerts' states from the store (those of rules and probes still
        configured); forget the others."""
        store = self.rt.store
        known = set()
        for record in store.list_alerts(self.environment):
            watched = self.watched.get(record.name)
            if watched is not None and watched.kind == record.kind:
                known.add(record.name)
                watched.state = AlertState(
                    record.state,
                    record.since,
                    record.fired_at,
                    record.resolved_at,
                    record.detail or "",
                )
                if record.expression != watched.expression:
                    self._save(watched, record.deployment_id)
        store.forget_alerts(self.environment, sorted(self.watched))
        for name in sorted(set(self.watched) - known):  # listed by `conveyor status` at once
            self._save(self.watched[name], None)

    def _save(self, watched: Watched, deployment_id: str | None) -> None:
        s = watched.state
        self.rt.store.put_alert(
            AlertRecord(
                environment=self.environment,
                name=watched.name,
                kind=watched.kind,
                state=s.state,
                updated_at=datetime.now(UTC),
                expression=watched.expression,
                since=s.since,
                fired_at=s.fired_at,
                resolved_at=s.resolved_at,
                detail=s.detail,
                deployment_id=deployment_id,
            )
        )

    # -- evaluation --------------------------------------------------------------------

    async def _counters(self) -> dict[str, dict[str, ReleaseStats]]:
        """Service -> backend address -> cumulative counters, for the services the rules
        read (each read once)."""
        needed = set()
        for rule, expr in self.rules.values():
            if not expr.custom:
                needed |= {rule.service} if rule.service else set(self.rt.loaded.config.services)
        needed &= self._routed()
        if not needed:
            return {}
        router = self.rt.router_for(self.environment)
        found: dict[str, dict[str, ReleaseStats]] = {}
        for service in sorted(needed):
            try:
                traffic = await router.traffic_stats(self.environment, service)
            except Exception as error:  # the router down: no reading this round
                self.log(f"monitors: cannot read the router's counters of {service}: {error}")
                continue
            found[service] = {
                address: ReleaseStats(t.requests, t.status_5xx, t.latency)
                for address, t in traffic.items()
            }
        return found

    def _routed(self) -> set[str]:
        """The services the router sends traffic to (workers have none)."""
        services = self.rt.loaded.config.services
        return {name for name, service in services.items() if service.route is not None}

    async def evaluate_rules(self, now: datetime | None = None, mono: float | None = None) -> None:
        """One round of every rule."""
        now = now or datetime.now(UTC)
        mono = time.monotonic() if mono is None else mono
        counters = await self._counters()
        readings = {}
        if self.sources:
            from conveyor.sources import read_metrics

            readings = await read_metrics(self.sources)
        for name, (rule, expr) in self.rules.items():
            if expr.custom:
                reading = readings[name]
                if reading.value is None:
                    measured = Measured(None, False, f"{expr.metric}: read failed: {reading.error}")
                else:
                    breached = expr.breached_by(reading.value)
                    measured = Measured(
                        reading.value, breached, f"{expr.metric} {expr.show(reading.value)}"
                    )
            else:
                services = [rule.service] if rule.service else sorted(self._routed())
                if any(
                    service not in counters for service in services if service in self._routed()
                ):
                    continue  # the router could not be read: no judgement this round
                merged: dict[str, ReleaseStats] = {}
                for service in services:
                    merged.update(counters.get(service, {}))
                window = self.windows[name]
                window.add(mono, merged)
                if not window.ready:  # just started: a firing alert must not resolve on it
                    continue
                measured = measure(expr, window.total(), rule.min_requests)
            self.observe(name, measured.breached, measured.detail, now)

    async def run_probe(self, name: str, now: datetime | None = None) -> None:
        """One check of probe `name`."""
        probe = self.config.probes[name]
        checks = self._probe_checks(probe)
        if not checks:
            self.observe(name, False, "no serving instance to probe", now or datetime.now(UTC))
            return
        results = await asyncio.gather(*(check.run() for check in checks.values()))
        failed = [result.detail for result in results if not result.ok]
        detail = failed[0] if failed else results[0].detail
        if failed and len(checks) > 1:
            detail = f"{len(failed)} of {len(checks)} instances failed: {detail}"
        self.observe(name, bool(failed), detail, now or datetime.now(UTC))

    def _probe_checks(self, probe: Probe) -> dict[str, Check]:
        from conveyor.checks.command import CommandCheck
        from conveyor.checks.http import HttpCheck
        from conveyor.checks.tcp import TcpCheck
        from conveyor.config.models import command_argv

        env_config = self.rt.environment(self.environment)
        if probe.against == "url":
            url = env_config.effective_url.rstrip("/")
            if probe.type == "command":
                assert probe.command is not None
                argv = command_argv(probe.command)
                return {
                    url: CommandCheck(
                        argv, self.rt.loaded.root, {"PROBE_URL": url}, timeout=probe.timeout
                    )
                }
            if probe.type == "tcp":
                host, port = _host_port(url)
                return {url: TcpCheck(host, port, probe.timeout)}
            from conveyor.routers.tls import trusted_certificate

            trust = trusted_certificate(self.rt.loaded, self.environment)
            return {
                url: HttpCheck(url + probe.path, probe.expect_status, probe.timeout, trust=trust)
            }
        checks: dict[str, Check] = {}
        for instance in self.rt.store.list_instances(self.environment, probe.service):
            if instance.state != "serving" or not instance.address:
                continue
            if probe.type == "tcp":
                where, _, number = instance.address.rpartition(":")
                checks[instance.address] = TcpCheck(where.strip("[]"), int(number), probe.timeout)
            else:
                checks[instance.address] = HttpCheck(
                    f"http://{instance.address}{probe.path}", probe.expect_status, probe.timeout
                )
        return checks

    def observe(self, name: str, breached: bool, detail: str, now: datetime) -> Transition | None:
        """Move alert `name` with one reading; record and act on what changed."""
        watched = self.watched[name]
        before = watched.state
        watched.state, moved = advance(before, breached, now, watched.hold, detail)
        if watched.state.state != before.state:
            deployment_id = self._serving_deployment()
            self._save(watched, deployment_id)
            if moved is not None:
                self._announce(watched, moved, deployment_id)
        return moved

    def _serving_deployment(self) -> str | None:
        for deployment in self.rt.store.list_deployments(self.environment, limit=20):
            if deployment.status == "succeeded" and deployment.kind != "down":
                return deployment.id
        return None

    def _announce(self, watched: Watched, moved: Transition, deployment_id: str | None) -> None:
        from conveyor.monitors import actions

        event = "alert_firing" if moved == "firing" else "alert_resolved"
        self.log(
            f"alert {watched.name} {'fired' if moved == 'firing' else 'resolved'}: "
            f"{watched.state.detail}"
        )
        actions.record_and_notify(self.rt, self.environment, watched, event, deployment_id)
        if moved == "firing" and watched.on_fire == "rollback":
            task = asyncio.create_task(self._roll_back(watched))
            self._acting.add(task)
            task.add_done_callback(self._acting.discard)

    async def _roll_back(self, watched: Watched) -> None:
        from conveyor.monitors import actions

        outcome = await actions.roll_back(self.rt, self.environment, watched, self.log)
        self.log(f"alert {watched.name}: {outcome}")

    # -- running -----------------------------------------------------------------------

    def start(self) -> None:
        """Load the alerts' states and start the rules' and probes' loops."""
        self.load()
        if self.rules:
            self._spawn(self._every(self.config.interval, self.evaluate_rules, "rules"))
        for name, probe in self.config.probes.items():
            self._spawn(self._every(probe.interval, _bind(self.run_probe, name), f"probe {name}"))
        firing = [w.name for w in self.watched.values() if w.state.state == FIRING]
        self.log(
            f"monitors of {self.environment}: {len(self.rules)} rule(s), "
            f"{len(self.config.probes)} probe(s)"
            + (f"; firing: {', '.join(firing)}" if firing else "")
        )

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _every(self, interval: float, work: Callable[[], Any], what: str) -> None:
        while True:
            started = time.monotonic()
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # one round's trouble must not stop the monitors
                self.log(f"monitors: {what}: {type(error).__name__}: {error}")
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def stop(self) -> None:
        """Stop the loops; a rollback under way finishes first (it holds the lock)."""
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._acting:
            await asyncio.wait(set(self._acting), timeout=60.0)


def _bind(function: Callable[[str], Any], name: str) -> Callable[[], Any]:
    return lambda: function(name)


def _host_port(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "127.0.0.1", port


def states(rt: Runtime, environment: str) -> Mapping[str, AlertRecord]:
    """The recorded alerts of `environment`, by name."""
    return {record.name: record for record in rt.store.list_alerts(environment)}
