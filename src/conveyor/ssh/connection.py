"""One SSH connection per host, reused for every command and file of a Conveyor run.

Commands are argv lists, quoted for the remote shell exactly once (`shlex.join`).
Host keys are checked against the Conveyor home's known_hosts file only: a host
whose key is not recorded, or differs from the recorded one, is refused with its
fingerprint (never accepted silently, never asked about). Every failure is a
`TargetError` that names the host and says what to do; nothing is retried.

An open connection sends an SSH keepalive every `KEEPALIVE_INTERVAL` seconds and
is closed after `KEEPALIVE_COUNT_MAX` unanswered ones, so a host that goes away
in the middle of a command is noticed in seconds (a `HostUnreachableError`), not
when the TCP stack gives up minutes later. A host found unreachable is in `lost`
for the rest of the run.
"""

from __future__ import annotations

import asyncio
import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConveyorError, HostUnreachableError, TargetError
from conveyor.ssh import known_hosts
from conveyor.ssh.hosts import HostSpec

if TYPE_CHECKING:
    import asyncssh

CONNECT_TIMEOUT = 10.0  # seconds to reach a host and log in
COMMAND_TIMEOUT = 60.0  # seconds a file or supervisorctl command may take on a host
KEEPALIVE_INTERVAL = 2.0  # seconds between SSH keepalives on an idle connection
KEEPALIVE_COUNT_MAX = 3  # unanswered keepalives after which the host is gone
# What one file upload keeps in flight: 8 x 64 KiB. asyncssh's default against OpenSSH is
# 16 x 256 KiB, which held 4 MiB (and its copies) per host: at 8 hosts at once the CLI
# passed 150 MB.
SFTP_BLOCK = 64 * 1024
SFTP_REQUESTS = 8


def _asyncssh() -> Any:
    """asyncssh, imported on first use (commands that reach no host never pay for it),
    without the deprecation warnings its import prints for DSA keys."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import asyncssh

    return asyncssh


@dataclass(frozen=True)
class Completed:
    """What a remote command did."""

    exit_status: int
    stdout: str
    stderr: str


class Connections:
    """The SSH connections of one Conveyor run, one per host, opened on first use."""

    def __init__(self, known_hosts_file: Path, timeout: float = CONNECT_TIMEOUT) -> None:
        self.known_hosts_file = known_hosts_file
        self.timeout = timeout
        self._open: dict[str, asyncssh.SSHClientConnection] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.lost: set[str] = set()  # hosts found unreachable during this run
        self._refused: dict[str, TargetError] = {}  # why a host could not be logged in to

    async def __aenter__(self) -> Connections:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        connections = list(self._open.values())
        self._open.clear()
        for connection in connections:
            connection.close()
        for connection in connections:
            await connection.wait_closed()

    async def connection(self, host: HostSpec) -> asyncssh.SSHClientConnection:
        """The host's connection, opened (and its key checked) the first time."""
        lock = self._locks.setdefault(host.name, asyncio.Lock())
        async with lock:
            connection = self._open.get(host.name)
            if connection is None:
                if host.name in self._refused:  # one attempt per host and run, no retry loop
                    raise self._refused[host.name]
                tunnel = await self.connection(host.jump) if host.jump is not None else None
                try:
                    connection = await self._connect(host, tunnel)
                except TargetError as error:
                    self._refused[host.name] = error
                    raise
                self._open[host.name] = connection
            return connection

    async def _connect(
        self, host: HostSpec, tunnel: asyncssh.SSHClientConnection | None
    ) -> asyncssh.SSHClientConnection:
        ssh = _asyncssh()
        options: dict[str, Any] = {
            "port": host.port,
            "username": host.user,
            "known_hosts": ssh.import_known_hosts(self._known_hosts_text()),
            "connect_timeout": self.timeout,
            "login_timeout": self.timeout,
            "keepalive_interval": KEEPALIVE_INTERVAL,
            "keepalive_count_max": KEEPALIVE_COUNT_MAX,
            # One attempt with the configured key, never a password or keyboard prompt.
            "password_auth": False,
            "kbdint_auth": False,
        }
        if host.identity is not None:
            options["client_keys"] = [str(host.identity)]
            options["agent_path"] = None
        if tunnel is not None:
            options["tunnel"] = tunnel
        try:
            connection: asyncssh.SSHClientConnection = await ssh.connect(host.address, **options)
            return connection
        except ssh.HostKeyNotVerifiable:
            raise await self._untrusted(host, tunnel) from None
        except ssh.PermissionDenied:
            raise TargetError(
                f"host {host.describe()}: SSH login refused for user {host.user!r}",
                hint="check the host's user and identity in conveyor.yml, and that the key "
                "is in the user's ~/.ssh/authorized_keys on the host",
            ) from None
        except (OSError, TimeoutError, ssh.Error) as exc:
            self.lost.add(host.name)
            raise unreachable(host, exc) from None

    def _known_hosts_text(self) -> str:
        if not self.known_hosts_file.exists():
            return ""
        return self.known_hosts_file.read_text()

    async def _untrusted(
        self, host: HostSpec, tunnel: asyncssh.SSHClientConnection | None
    ) -> TargetError:
        try:
            offered = await self.host_key(host, tunnel)
        except TargetError:
            offered = None
        shown = f" (it offers {known_hosts.fingerprint(offered)})" if offered else ""
        if known_hosts.recorded(self.known_hosts_file, host.key_name):
            return TargetError(
                f"host {host.describe()}: its SSH host key has CHANGED{shown}; refusing to "
                "connect (the host was reinstalled, or someone is in between)",
                hint="if you know why it changed, check the fingerprint on the host "
                "(`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`) and record the new one "
                "with `conveyor hosts trust ENV`",
            )
        return TargetError(
            f"host {host.describe()}: its SSH host key is not known{shown}",
            hint="check the fingerprint, then record it with `conveyor hosts trust ENV`",
        )

    async def host_key(
        self, host: HostSpec, tunnel: asyncssh.SSHClientConnection | None = None
    ) -> str:
        """The public key line (`keytype base64`) the host offers, without logging in."""
        ssh = _asyncssh()
        if tunnel is None and host.jump is not None:
            tunnel = await self.connection(host.jump)
        try:
            key = await asyncio.wait_for(
                ssh.get_server_host_key(host.address, host.port, tunnel=tunnel),
                self.timeout,
            )
        except (OSError, TimeoutError, ssh.Error) as exc:
            raise unreachable(host, exc) from None
        if key is None:
            raise TargetError(f"host {host.describe()}: it offered no host key")
        return " ".join(key.export_public_key().decode().split()[:2])

    async def check(
        self,
        host: HostSpec,
        argv: list[str],
        what: str,
        *,
        timeout: float = COMMAND_TIMEOUT,
        input: str | None = None,
        error: type[ConveyorError] = TargetError,
        prefix: str = "",
    ) -> Completed:
        """`run`, where a non-zero exit raises `error`: `PREFIXhost H: cannot WHAT: the
        command's output`, and what to check."""
        done = await self.run(host, argv, timeout=timeout, input=input)
        if done.exit_status != 0:
            output = (done.stderr or done.stdout).strip()
            raise error(
                f"{prefix}host {host.describe()}: cannot {what}: "
                f"{output or f'exit status {done.exit_status}'}",
                hint="check the host's disk space and the login user's permissions "
                "(`conveyor hosts ENV` checks every host)",
            )
        return done

    async def run(
        self,
        host: HostSpec,
        argv: list[str],
        *,
        timeout: float,
        input: str | None = None,
    ) -> Completed:
        """Run `argv` on the host (its login shell gets it quoted once) and wait."""
        if not argv:
            raise TargetError(f"host {host.name}: empty command", hint="give an argv list")
        connection = await self.connection(host)
        ssh = _asyncssh()
        command = shlex.join(argv)
        try:
            result = await connection.run(command, input=input, check=False, timeout=timeout)
        except ssh.ProcessError as exc:  # pragma: no cover - check=False never raises it
            raise TargetError(f"host {host.name}: {command}: {exc}") from None
        except TimeoutError:
            raise TargetError(
                f"host {host.describe()}: `{command}` did not finish in {timeout:g} s"
            ) from None
        except (OSError, ssh.Error) as exc:
            self._open.pop(host.name, None)
            self.lost.add(host.name)
            raise unreachable(host, exc) from None
        status = result.exit_status if result.exit_status is not None else 255
        return Completed(status, _text(result.stdout), _text(result.stderr))

    async def put(self, host: HostSpec, local: Path, remote: str) -> None:
        """Copy the file `local` to the path `remote` on the host (SFTP)."""
        connection = await self.connection(host)
        ssh = _asyncssh()
        try:
            async with connection.start_sftp_client() as sftp:
                await sftp.put(
                    str(local), remote, block_size=SFTP_BLOCK, max_requests=SFTP_REQUESTS
                )
        except ssh.DisconnectError as exc:
            self._open.pop(host.name, None)
            self.lost.add(host.name)
            raise unreachable(host, exc) from None
        except (OSError, ssh.Error) as exc:
            raise TargetError(
                f"host {host.describe()}: cannot copy {local.name} to {remote}: {exc}",
                hint="check the free space and permissions of the directory on the host",
            ) from None


def unreachable(host: HostSpec, exc: BaseException) -> HostUnreachableError:
    """The error for a host that cannot be reached (or dropped the connection)."""
    reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
    if isinstance(exc, TimeoutError) or not reason:
        reason = "no answer"
    return HostUnreachableError(
        host.name,
        f"host {host.describe()} is unreachable: {reason}",
        hint="check that the host is up, its address and port in conveyor.yml, and that "
        "sshd runs there (`conveyor hosts ENV` checks every host)",
    )


def _text(output: str | bytes | None) -> str:
    if output is None:
        return ""
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output
