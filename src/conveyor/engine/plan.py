"""Plan steps: small, typed, serializable, idempotent units of work.

A strategy turns (config, observed state) into a `Plan`. The executor runs
the steps in order and journals each one; every step can be run again after
a crash without harm (starting a running instance, setting the same weights
or stopping a stopped instance are no-ops).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from conveyor.config.durations import format_duration

# Phases of a deployment's plan.
FORWARD = "forward"  # moving to the new releases
REVERT = "revert"  # restoring the previous releases (rollback on failure, abort)


@dataclass(frozen=True)
class InstanceSettings:
    """A service's settings that the instance steps need, resolved once when the plan is made
    (`engine.settings`): the handlers never go back to the config for them. Plans are
    journaled, so no secret may be here: the instance's command line and environment (which
    may carry interpolated secrets) are resolved when it starts and never journaled."""

    health: dict[str, Any] = field(default_factory=dict)  # `health:` in dict form
    deploy_timeout: float = 120.0
    stop_timeout: float = 10.0
    drain_timeout: float = 30.0
    min_ready: float = 0.0  # the service's strategy's (`strategies.choice.min_ready`)
    worker: bool = False  # no route: no port, no router entry; healthy when it runs
    stop_signal: str = "TERM"


@dataclass(frozen=True)
class Step:
    """Base of all steps: which service it concerns and in which phase it runs."""

    kind: ClassVar[str] = "step"
    # A check that changes nothing: its failure, before any step that changes something,
    # refuses the deployment (status `refused`) instead of rolling it back.
    gate: ClassVar[bool] = False
    changes_nothing: ClassVar[bool] = False  # (gates change nothing either)
    service: str
    phase: str = FORWARD

    def describe(self) -> str:
        """One line for `--dry-run`, the journal and `history`."""
        return self.kind

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class VerifyRelease(Step):
    """Check that `release` still matches the digest recorded when it was built."""

    kind: ClassVar[str] = "verify_release"
    gate: ClassVar[bool] = True  # a modified release is refused before anything changes
    release: str = ""

    def describe(self) -> str:
        return f"verify the digest of {self.release}"


@dataclass(frozen=True)
class ShipRelease(Step):
    """Put the sealed `release` on `host` and check its digest there, before anything starts
    from it. Only in plans of targets that run instances away from where releases are built
    (`Target.ships_releases`): the local target needs none."""

    kind: ClassVar[str] = "ship"
    gate: ClassVar[bool] = True  # a release that cannot be shipped refuses the deployment
    release: str = ""
    host: str = ""

    def describe(self) -> str:
        return f"ship {self.release} to {self.host} and check its digest there"


@dataclass(frozen=True)
class AwaitApproval(Step):
    """Wait in awaiting_approval until the environment's approvals are given (and its wait
    timer has run); a rejection or the request's expiry ends the deployment, unchanged."""

    kind: ClassVar[str] = "await_approval"
    changes_nothing: ClassVar[bool] = True

    def describe(self) -> str:
        return "wait for approval"


@dataclass(frozen=True)
class RunHook(Step):
    """Run the environment's `hook` commands (pre_deploy); a failure stops the deploy."""

    kind: ClassVar[str] = "hook"
    gate: ClassVar[bool] = True
    hook: str = "pre_deploy"

    def describe(self) -> str:
        return f"run the {self.hook} hooks"


@dataclass(frozen=True)
class PendingMigrations(Step):
    """Ask the migration tool of `release` whether anything is pending on `database`;
    when nothing is, the check, backup and migrate steps of this migration are skipped."""

    kind: ClassVar[str] = "pending_migrations"
    changes_nothing: ClassVar[bool] = True  # it only asks (a failure is not a refusal)
    release: str = ""
    database: str = ""

    def describe(self) -> str:
        return f"ask which migrations of {self.release} are pending on database {self.database}"


@dataclass(frozen=True)
class CheckMigration(Step):
    """Check that the SQL the migration of `release` will run does not break `previous`,
    which keeps serving meanwhile. `warn_only` (immediate deploys) reports instead of
    failing; `allowed_by` records who passed --allow-breaking-migrations."""

    kind: ClassVar[str] = "check_migration"
    gate: ClassVar[bool] = True
    release: str = ""
    previous: str = ""
    database: str = ""
    warn_only: bool = False
    allowed_by: str = ""

    def describe(self) -> str:
        return f"check that the migration of {self.release} keeps {self.previous} working"


@dataclass(frozen=True)
class BackupDatabase(Step):
    """Back up `database` and verify the backup (as its settings say) before a migration."""

    kind: ClassVar[str] = "backup"
    database: str = ""

    def describe(self) -> str:
        return f"back up database {self.database} and verify the backup"


@dataclass(frozen=True)
class Migrate(Step):
    """Run the service's migration in `release`'s context against `database`."""

    kind: ClassVar[str] = "migrate"
    release: str = ""
    database: str = ""

    def describe(self) -> str:
        return f"migrate database {self.database} for {self.release}"


@dataclass(frozen=True)
class RestoreDatabase(Step):
    """Restore `database` from `backup`, or (empty) from the backup this deployment took.

    A backup of the state before is taken and verified first."""

    kind: ClassVar[str] = "restore_db"
    database: str = ""
    backup: str = ""

    def describe(self) -> str:
        source = self.backup or "the backup taken before the migration"
        return f"restore database {self.database} from {source}"


@dataclass(frozen=True)
class StartAccessory(Step):
    """Start the accessory `service` (its name) on `host` unless it runs, and wait until it
    is healthy; a running one is never restarted (a changed config is only reported)."""

    kind: ClassVar[str] = "start_accessory"
    host: str = ""

    def describe(self) -> str:
        where = f" on {self.host}" if self.host and self.host != "local" else ""
        return f"start accessory {self.service}{where} (not running)"


@dataclass(frozen=True)
class StartInstances(Step):
    """Start instances of a release and register them with the router at weight 0.

    `hosts[i]` is where `instances[i]` runs; empty (plans journaled before hosts
    existed): the target's first host.
    """

    kind: ClassVar[str] = "start"
    release: str = ""
    instances: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    settings: InstanceSettings | None = None

    def describe(self) -> str:
        where = ""
        if self.hosts and set(self.hosts) != {"local"}:
            where = " on " + ", ".join(dict.fromkeys(self.hosts))
        return f"start {_names(self.instances)} ({self.service} {self.release}){where}"

    def placed(self, known: tuple[str, ...]) -> list[tuple[str, str]]:
        """(instance, host) pairs; `known` are the target's hosts, the first the default."""
        hosts = self.hosts or (known[0],) * len(self.instances)
        return list(zip(self.instances, hosts, strict=True))


@dataclass(frozen=True)
class WaitHealthy(Step):
    """Wait until each instance passes its health check (then `min_ready`).

    `recheck`: the instances passed their checks before and kept running (warm
    instances in the rollback window), so one passing check is enough.
    """

    kind: ClassVar[str] = "wait_healthy"
    instances: tuple[str, ...] = ()
    recheck: bool = False
    settings: InstanceSettings | None = None

    def describe(self) -> str:
        if self.recheck:
            return f"check {_names(self.instances)} once (still healthy)"
        return f"wait until {_names(self.instances)} healthy"


@dataclass(frozen=True)
class SmokeTests(Step):
    """Run the service's smoke tests on `instance` (healthy, no traffic yet); one failure
    fails the step. `tests` are the `SmokeTest` settings in dict form."""

    kind: ClassVar[str] = "smoke"
    instance: str = ""
    tests: tuple[dict[str, Any], ...] = ()

    def describe(self) -> str:
        return f"smoke-test {self.instance} ({len(self.tests)} test{'s' * (len(self.tests) != 1)})"


@dataclass(frozen=True)
class SetWeights(Step):
    """Set the complete traffic weights of a service; instances absent get none."""

    kind: ClassVar[str] = "set_weights"
    weights: tuple[tuple[str, int], ...] = ()

    def describe(self) -> str:
        shares = ", ".join(f"{name}={weight}" for name, weight in self.weights) or "nothing"
        return f"route {self.service} traffic to {shares}"

    def as_mapping(self) -> dict[str, int]:
        return dict(self.weights)


@dataclass(frozen=True)
class DrainInstances(Step):
    """Take instances out of rotation and wait for their in-flight requests."""

    kind: ClassVar[str] = "drain"
    instances: tuple[str, ...] = ()
    settings: InstanceSettings | None = None

    def describe(self) -> str:
        return f"drain {_names(self.instances)}"


@dataclass(frozen=True)
class StopInstances(Step):
    """Stop instances gracefully and forget them."""

    kind: ClassVar[str] = "stop"
    instances: tuple[str, ...] = ()
    settings: InstanceSettings | None = None

    def describe(self) -> str:
        return f"stop {_names(self.instances)}"


@dataclass(frozen=True)
class MarkCurrent(Step):
    """Record `release` as the service's current release in the environment."""

    kind: ClassVar[str] = "mark_current"
    release: str | None = None

    def describe(self) -> str:
        if self.release is None:
            return f"mark {self.service} as not deployed"
        return f"mark {self.service} {self.release} as current"


@dataclass(frozen=True)
class Pause(Step):
    """Wait `seconds`, or (None) until `conveyor promote`; `conveyor pause` may stop any step."""

    kind: ClassVar[str] = "pause"
    seconds: float | None = None
    reason: str = ""

    def describe(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        if self.seconds is None:
            return f"pause until conveyor promote{why}"
        return f"pause {self.seconds:g}s{why}"


@dataclass(frozen=True)
class Analyze(Step):
    """Judge the new release from live metrics until the analysis passes, fails or gives up.

    `spec` is an `AnalysisSpec` in dict form; `canary` and `stable` are the
    releases compared. With `preview`, the traffic of the environment's
    preview listener counts too (blue-green's pre-promotion analysis).
    """

    kind: ClassVar[str] = "analyze"
    name: str = ""
    spec: dict[str, Any] = field(default_factory=dict)
    canary: str = ""
    stable: str = ""
    preview: bool = False

    def describe(self) -> str:
        return f"analysis {self.name}: {self.canary} against {self.stable}"


@dataclass(frozen=True)
class StartAnalysis(Analyze):
    """Start a background analysis that runs beside the next steps until `StopAnalysis`."""

    kind: ClassVar[str] = "start_analysis"

    def describe(self) -> str:
        return f"start background analysis {self.name}: {self.canary} against {self.stable}"


@dataclass(frozen=True)
class StopAnalysis(Step):
    """End the background analysis `name` (it passed if it has not failed by now)."""

    kind: ClassVar[str] = "stop_analysis"
    name: str = ""

    def describe(self) -> str:
        return f"end background analysis {self.name}"


@dataclass(frozen=True)
class KeepWarm(Step):
    """Leave instances running without traffic for `seconds` (the rollback window)."""

    kind: ClassVar[str] = "keep_warm"
    instances: tuple[str, ...] = ()
    seconds: float = 0.0

    def describe(self) -> str:
        return f"keep {_names(self.instances)} warm for {self.seconds:g}s (rollback window)"


@dataclass(frozen=True)
class Preview(Step):
    """Expose instances on the environment's preview address; none: close the preview."""

    kind: ClassVar[str] = "preview"
    instances: tuple[str, ...] = ()

    def describe(self) -> str:
        if not self.instances:
            return "close the preview"
        return f"preview {_names(self.instances)}"


@dataclass(frozen=True)
class Verify(Step):
    """Check the environment for `bake` seconds after the deploy gave it all the traffic:
    the smoke `tests` (`SmokeTest` dicts) against `url` every `interval`, and the
    analysis `analysis` (its `spec` in dict form, thresholds only) of the new releases'
    traffic. One failure fails the step, which rolls the deploy back."""

    kind: ClassVar[str] = "verify"
    bake: float = 0.0
    interval: float = 5.0
    url: str = ""
    tests: tuple[dict[str, Any], ...] = ()
    analysis: str = ""
    spec: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        checks = []
        if self.tests:
            count = len(self.tests)
            every = format_duration(self.interval)
            checks.append(f"{count} smoke test{'s' * (count != 1)} of {self.url} every {every}")
        if self.analysis:
            checks.append(f"analysis {self.analysis}")
        return f"verify for {format_duration(self.bake)} after traffic: {', '.join(checks)}"


STEP_TYPES: dict[str, type[Step]] = {
    cls.kind: cls
    for cls in (
        VerifyRelease,
        ShipRelease,
        AwaitApproval,
        RunHook,
        PendingMigrations,
        CheckMigration,
        BackupDatabase,
        Migrate,
        RestoreDatabase,
        StartAccessory,
        StartInstances,
        WaitHealthy,
        SmokeTests,
        SetWeights,
        DrainInstances,
        StopInstances,
        MarkCurrent,
        Pause,
        Analyze,
        StartAnalysis,
        StopAnalysis,
        KeepWarm,
        Preview,
        Verify,
    )
}


@dataclass(frozen=True)
class Plan:
    """An ordered list of steps for one environment."""

    environment: str
    steps: tuple[Step, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.steps)

    def describe(self) -> list[str]:
        return [f"{i + 1:>3}. [{s.service}] {s.describe()}" for i, s in enumerate(self.steps)]


def service_sequence(steps: list[Step] | tuple[Step, ...]) -> list[str]:
    """The services in the order the plan moves them forward (each service's steps end with
    its `mark_current`): what `after:` decided."""
    marks = (s.service for s in steps if isinstance(s, MarkCurrent) and s.phase == FORWARD)
    return list(dict.fromkeys(marks))


def refuses(steps: list[Step] | tuple[Step, ...], failed: int) -> bool:
    """Whether the failure of step `failed` (from 1) refuses the deployment: it is a gate,
    and no step before it changed anything."""
    if not 1 <= failed <= len(steps):
        return False
    before = steps[: failed - 1]
    return steps[failed - 1].gate and all(s.gate or s.changes_nothing for s in before)


def step_from_dict(data: dict[str, Any]) -> Step:
    """Rebuild a step serialized by `Step.to_dict` (the journal stores plans so)."""
    values = dict(data)
    cls = STEP_TYPES[values.pop("kind")]
    for key in ("instances", "hosts"):
        if key in values:
            values[key] = tuple(values[key])
    if "weights" in values:
        values["weights"] = tuple((str(n), int(w)) for n, w in values["weights"])
    if "tests" in values:
        values["tests"] = tuple(dict(t) for t in values["tests"])
    if values.get("settings") is not None:
        values["settings"] = InstanceSettings(**values["settings"])
    return cls(**values)


def steps_to_json(steps: tuple[Step, ...] | list[Step]) -> list[dict[str, Any]]:
    return [s.to_dict() for s in steps]


def steps_from_json(data: list[dict[str, Any]]) -> list[Step]:
    return [step_from_dict(d) for d in data]


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(names) if names else "nothing"
