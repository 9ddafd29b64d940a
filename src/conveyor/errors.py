"""The documented exception tree.

Every error a user can cause or meet is a `ConveyorError`. The CLI prints
`error: <message>` (and `hint: <hint>` when there is one) and exits with the
error's `exit_code`, never with a traceback. Exit codes:

* 0 - success
* 1 - the operation failed or was refused (deploy failed and rolled back,
  lock held, health check never passed, unfinished deployment, ...)
* 2 - usage or configuration error (bad `conveyor.yml`, unknown environment,
  unknown release, bad command-line arguments)
* 3 - waiting for a person: the rollout paused (a `pause` step, an inconclusive
  analysis) and goes on with `conveyor promote|resume ENV` or ends with `abort`
* 4 - the state database is damaged, emptied or missing: nothing was done;
  `conveyor state restore` puts the last good copy back
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_WAITING = 3
EXIT_STATE = 4


class ConveyorError(Exception):
    """Base of every error shown to a user: a message and what to do next."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(ConveyorError):
    """The command line names something that does not exist or is malformed."""

    exit_code = EXIT_USAGE


class ConfigError(ConveyorError):
    """`conveyor.yml` is invalid. `issues` holds one `key/path: problem` per line."""

    exit_code = EXIT_USAGE

    def __init__(self, issues: list[str], source: str = "conveyor.yml", hint: str | None = None):
        self.issues = list(issues)
        self.source = source
        count = len(self.issues)
        head = f"{source}: {count} problem{'s' if count != 1 else ''}"
        super().__init__(head + "\n" + "\n".join(f"  {i}" for i in self.issues), hint)


class StateError(ConveyorError):
    """The state store cannot be opened, migrated or queried."""


class StateCorruptError(StateError):
    """The state database is damaged, empty or missing although a store existed."""

    exit_code = EXIT_STATE


class DiskFullError(ConveyorError):
    """Not enough free space where Conveyor must write (releases, state, logs)."""


class BuildError(ConveyorError):
    """A release could not be built (source missing, build command failed)."""


class ReleaseIntegrityError(ConveyorError):
    """A release directory no longer matches the digest recorded at build time."""


class LockHeldError(ConveyorError):
    """Another deployment holds the environment's lock."""


class UnfinishedDeploymentError(ConveyorError):
    """An earlier deployment of the environment was interrupted."""


class TargetError(ConveyorError):
    """The place instances run (supervisord, a host) failed to do what was asked."""


class HostUnreachableError(TargetError):
    """A host of an SSH environment cannot be reached, or stopped answering on an open
    connection (its SSH keepalives went unanswered). `host` is its name."""

    def __init__(self, host: str, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.host = host


class CommandNotRunError(TargetError):
    """A one-off command could not be started: not found (exit 127, as a shell
    says) or not executable (126)."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 127) -> None:
        super().__init__(message, hint)
        self.exit_code = exit_code


class RouterError(ConveyorError):
    """The router (Caddy, ...) rejected or failed a change."""


class HealthCheckError(ConveyorError):
    """An instance never became healthy before its deploy timeout."""


class WrongAnswerError(HealthCheckError):
    """An instance kept answering its health check with the same wrong HTTP status (a
    configuration error, not a slow boot): failed before the deploy timeout. The hint
    is chosen by the status."""


class PortTakenError(HealthCheckError):
    """Another program than the instance listens on the instance's port: the health
    checks were its answers. The hint says what to do."""


class SmokeTestError(ConveyorError):
    """A smoke test of a new release failed before the release got any traffic."""


class AnalysisFailedError(ConveyorError):
    """An analysis judged the new release worse than allowed: the rollout is aborted."""


class VerifyFailedError(ConveyorError):
    """A check of `verify:` failed while the new releases had all the traffic (a smoke test
    at the environment's URL, or its analysis): the deploy is rolled back."""


class DatabaseError(ConveyorError):
    """A database, or one of its tools (pg_dump, mariadb-dump, ...), failed to do what was asked."""


class BackupCorruptError(DatabaseError):
    """A backup file does not read back whole, or differs from what was recorded when taken."""


class MigrationError(DatabaseError):
    """A release's migration failed, or its SQL breaks the release still serving."""


class ApprovalRejectedError(ConveyorError):
    """An approver rejected the deployment, or its approval request expired."""


class DeployError(ConveyorError):
    """A deployment failed; the environment was restored to its previous releases."""


class CrashFailpoint(BaseException):
    """Raised by a `crash` failpoint in tests run in-process; simulates a kill."""
