"""The variables every process of a release gets: instances, migrations, one-off commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime


def release_env(rt: Runtime, environment: str, service: str, release_id: str) -> dict[str, str]:
    """What every process of a release gets (instances, migrations): its env from the
    config, DATA_DIR and CONVEYOR_*."""
    svc = rt.loaded.config.service_for(environment, service)
    data_dir = rt.paths.data / environment / service
    data_dir.mkdir(parents=True, exist_ok=True)
    return {
        # Releases are sealed; Python would otherwise write __pycache__ into
        # them (root ignores the read-only bits) and break their digest.
        "PYTHONDONTWRITEBYTECODE": "1",
        **svc.env,  # the service's env with the environment's merged over it
        "DATA_DIR": str(data_dir),
        "CONVEYOR_ENV": environment,
        "CONVEYOR_SERVICE": service,
        "CONVEYOR_RELEASE": release_id,
    }
