"""Where a Conveyor home keeps its files.

The home is `.conveyor/` beside `conveyor.yml` unless `CONVEYOR_HOME` names
another directory. Unix sockets live in a short run directory because their
paths are limited to about 100 bytes.

Releases are kept outside the project tree: tools that look in parent
directories for their workspace (Next.js and its lock files, git, linters'
configs) must find the release alone, not the working tree around it. A home
inside the project keeps its releases under `$XDG_DATA_HOME/conveyor/releases`
(`~/.local/share/...`) instead, in a directory named after the home.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

_SOCKET_PATH_BUDGET = 90  # bytes; AF_UNIX paths max out at 107 on Linux


@dataclass(frozen=True)
class Paths:
    """All paths of one Conveyor home."""

    home: Path
    releases_root: Path | None = None  # default: <home>/releases

    @classmethod
    def for_project(cls, project_root: Path) -> Paths:
        """`$CONVEYOR_HOME`, else `<project_root>/.conveyor`; releases outside the project."""
        override = os.environ.get("CONVEYOR_HOME")
        home = (Path(override) if override else project_root / ".conveyor").resolve()
        project = project_root.resolve()
        if home != project and project not in home.parents:
            return cls(home)
        data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
        name = f"{project.name}-{hashlib.sha256(str(home).encode()).hexdigest()[:10]}"
        return cls(home, data.resolve() / "conveyor" / "releases" / name)

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
        return self.home / "data"

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
        """Create the directories (the run directory private to the user)."""
        for directory in (
            self.home,
            self.releases,
            self.build_logs,
            self.instance_logs,
            self.data,
            self.supervisor_dir,
            self.caddy_dir,
        ):
            directory.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        ignore = self.home / ".gitignore"
        if not ignore.exists():
            # State, releases and logs are never the project's source: git (and so
            # `conveyor build`, the pipeline and its dirty check) ignores them.
            ignore.write_text("# Conveyor's state: not source\n*\n")
        return self
