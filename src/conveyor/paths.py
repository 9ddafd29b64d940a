"""Where a Conveyor home keeps its files.

The home is `.conveyor/` beside `conveyor.yml` unless `CONVEYOR_HOME` names
another directory. Unix sockets live in a short run directory because their
paths are limited to about 100 bytes.

Releases are kept outside the project tree: tools that look in parent
directories for their workspace (Next.js and its lock files, git, linters'
configs) must find the release alone, not the working tree around it. A home
inside the project keeps its releases under `$XDG_DATA_HOME/conveyor/releases`
(`~/.local/share/...`) instead, in a directory named after the home.

Modes: nobody but Conveyor's user reads the home. Run as root, the app runs as
an unprivileged user (`conveyor.runas`) that must pass through to its release
and data directories: the home and those two trees are then 0711 (enter, not
list) and their releases and data keep it out of everything else, and a home
inside the project keeps both under `/var/lib/conveyor` (root's home is
usually closed to other users).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

_SOCKET_PATH_BUDGET = 90  # bytes; AF_UNIX paths max out at 107 on Linux


@dataclass(frozen=True)
class Paths:
    """All paths of one Conveyor home."""

    home: Path
    releases_root: Path | None = None  # default: <home>/releases
    data_root: Path | None = None  # default: <home>/data

    @classmethod
    def for_project(cls, project_root: Path) -> Paths:
        """`$CONVEYOR_HOME`, else `<project_root>/.conveyor`; releases outside the project."""
        override = os.environ.get("CONVEYOR_HOME")
        home = (Path(override) if override else project_root / ".conveyor").resolve()
        project = project_root.resolve()
        if home != project and project not in home.parents:
            return cls(home)
        name = f"{project.name}-{hashlib.sha256(str(home).encode()).hexdigest()[:10]}"
        if os.environ.get("XDG_DATA_HOME") or os.geteuid() != 0:
            data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
            return cls(home, data.resolve() / "conveyor" / "releases" / name)
        system = Path("/var/lib/conveyor")
        return cls(home, system / "releases" / name, system / "data" / name)

    @property
    def state_db(self) -> Path:
        return self.home / "state.db"

    @property
    def releases(self) -> Path:
        return self.releases_root or self.home / "releases"

    def release_dir(self, service: str, release_id: str) -> Path:
        return self.releases / service / release_id

    @property
    def build_logs(self) -> Path:
        return self.home / "logs" / "builds"

    @property
    def deployment_logs(self) -> Path:
        """Output of a deployment's one-off commands (migrations, sql_preview)."""
        return self.home / "logs" / "deployments"

    @property
    def pipelines(self) -> Path:
        """One directory per pipeline run: its jobs' logs (and a checkout for --release)."""
        return self.home / "pipelines"

    @property
    def instance_logs(self) -> Path:
        return self.home / "logs" / "instances"

    @property
    def data(self) -> Path:
        """Persistent per-environment data shared by all releases of a service."""
        return self.data_root or self.home / "data"

    @property
    def backups(self) -> Path:
        """Database backups, one directory per database (unless the config names another)."""
        return self.home / "backups"

    @property
    def cache_dir(self) -> Path:
        """Derived data that can be deleted at any time (rebuilt on the next command)."""
        return self.home / "cache"

    @property
    def config_summary(self) -> Path:
        """What `conveyor status` needs from conveyor.yml (see `conveyor.config.cache`)."""
        return self.cache_dir / "config-summary.json"

    @property
    def known_hosts(self) -> Path:
        """SSH host keys `conveyor hosts trust` recorded (OpenSSH's format, mode 0600)."""
        return self.home / "known_hosts"

    @property
    def supervisor_dir(self) -> Path:
        return self.home / "supervisor"

    @property
    def caddy_dir(self) -> Path:
        return self.home / "caddy"

    @property
    def haproxy_dir(self) -> Path:
        """HAProxy's generated config, the router's state file and the traffic log."""
        return self.home / "haproxy"

    @property
    def run_dir(self) -> Path:
        """Directory for unix sockets: inside the home when short enough."""
        inside = self.home / "run"
        if len(str(inside / "supervisor.sock")) <= _SOCKET_PATH_BUDGET:
            return inside
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        return Path("/tmp") / f"conveyor-{digest}"

    @property
    def supervisor_socket(self) -> Path:
        return self.run_dir / "supervisor.sock"

    @property
    def caddy_admin_socket(self) -> Path:
        return self.run_dir / "caddy-admin.sock"

    @property
    def haproxy_socket(self) -> Path:
        """HAProxy's stats socket (runtime API, level admin) of the current worker."""
        return self.run_dir / "haproxy.sock"

    @property
    def haproxy_master_socket(self) -> Path:
        """HAProxy's master CLI: reloads, and the old workers still finishing requests."""
        return self.run_dir / "haproxy-master.sock"

    def ensure(self) -> Paths:
        """Create the directories, private to Conveyor's user; see the module's doc."""
        passable = passable_mode()
        for directory, mode in (
            (self.home, passable),
            (self.releases, passable),
            (self.data, passable),
            (self.home / "logs", 0o700),
            (self.build_logs, 0o700),
            (self.instance_logs, 0o700),
            (self.supervisor_dir, 0o700),
            (self.caddy_dir, 0o700),
            (self.run_dir, 0o700),
        ):
            make_dir(directory, mode)
        for state in (self.state_db, *(self.home.glob("state.db-*"))):
            # A state written by an older Conveyor may be 0644: it holds the history,
            # approvals and backup paths.
            if state.exists() and stat.S_IMODE(state.stat().st_mode) & 0o077:
                state.chmod(0o600)
        ignore = self.home / ".gitignore"
        if not ignore.exists():
            # State, releases and logs are never the project's source: git (and so
            # `conveyor build`, the pipeline and its dirty check) ignores them.
            ignore.write_text("# Conveyor's state: not source\n*\n")
        return self


def make_dir(path: Path, mode: int) -> None:
    """`path` with exactly `mode` (created, or tightened/opened when it differs); the
    directories it creates on the way get `mode` too."""
    missing = [d for d in (*reversed(path.parents), path) if not d.exists()]
    for directory in missing:
        directory.mkdir(mode=mode, exist_ok=True)
        directory.chmod(mode)  # the umask may have taken bits off
    if stat.S_IMODE(path.stat().st_mode) != mode:
        path.chmod(mode)


def passable_mode() -> int:
    """The mode of a directory on the way to releases and data: 0711 when the app may
    run as another user (Conveyor runs as root), else 0700."""
    return 0o711 if os.geteuid() == 0 else 0o700
