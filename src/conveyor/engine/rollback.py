"""Which releases `conveyor rollback` goes back to."""

from __future__ import annotations

from conveyor.engine.runtime import Runtime
from conveyor.errors import UsageError
from conveyor.store.records import SUCCEEDED


def rollback_target(rt: Runtime, environment: str, to: list[str]) -> dict[str, str]:
    """The release set to redeploy.

    Without `to`: the newest successful deployment whose releases differ from
    what runs now (so rolling back twice returns to where you started, as on
    Heroku). With `to`: each `RELEASE` or `SERVICE=RELEASE` replaces that
    service's current release; the other services stay as they are.
    """
    current = rt.store.current_releases(environment)
    if to:
        target = dict(current)
        for item in to:
            service, release = _resolve(rt, item)
            target[service] = release
        return target
    for deployment in rt.store.list_deployments(environment):
        if deployment.status != SUCCEEDED or deployment.kind == "down":
            continue
        candidate = {s: r for s, r in deployment.releases.items() if s in rt.loaded.config.services}
        if candidate and candidate != {s: current.get(s) for s in candidate}:
            return candidate
    raise UsageError(
        f"{environment} has no earlier successful deployment to roll back to",
        hint=f"pick a release with: conveyor rollback {environment} --to RELEASE "
        "(see: conveyor releases)",
    )


def _resolve(rt: Runtime, item: str) -> tuple[str, str]:
    service, sep, release = item.partition("=")
    if sep:
        if rt.store.get_release(service, release) is None:
            raise UsageError(
                f'service "{service}" has no release "{release}"',
                hint=f"see: conveyor releases {service}",
            )
        return service, release
    owners = [r for r in rt.store.list_releases() if r.id == item]
    if not owners:
        raise UsageError(f'no release "{item}"', hint="see: conveyor releases")
    if len(owners) > 1:
        names = ", ".join(sorted(r.service for r in owners))
        raise UsageError(
            f'release "{item}" exists for several services ({names})', hint=f"write SERVICE={item}"
        )
    return owners[0].service, item
