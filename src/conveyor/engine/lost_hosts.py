"""A host lost in the middle of a deployment: its instances get no more traffic.

When a step fails because a host stopped answering (`HostUnreachableError`), the
router (on the deployer) gives weight 0 to every instance recorded on that host,
service by service, before the deployment is rolled back on the other hosts. The
instances themselves cannot be stopped while the host is away; the SSH target
leaves them (`SshTarget.stop`), and once the host is back the next command that
prepares it stops the programs no record knows (`conveyor.targets.ssh_strays`).
"""

from __future__ import annotations

from collections.abc import Callable

from conveyor.engine.runtime import Runtime
from conveyor.errors import ConveyorError


async def take_traffic_from(
    rt: Runtime, environment: str, host: str, progress: Callable[[str], None]
) -> list[str]:
    """Weight 0 for the environment's instances on `host`; the names of those that had
    traffic. A router that fails here is reported, not raised: the rollback goes on."""
    router = rt.router_for(environment)
    taken: list[str] = []
    services = {i.service for i in rt.store.list_instances(environment=environment)}
    for service in sorted(services):
        on_host = {
            i.address: i.name
            for i in rt.store.list_instances(environment=environment, service=service)
            if i.host == host and i.address  # a worker has no traffic to take
        }
        if not on_host:
            continue
        try:
            weights = await router.weights(environment, service)
            if not any(weights.get(a, 0) for a in on_host):
                continue
            await router.set_weights(
                environment, service, {a: 0 if a in on_host else w for a, w in weights.items()}
            )
        except ConveyorError as error:
            progress(f"[{service}] cannot take the traffic away from {host}: {error.message}")
            continue
        taken.extend(sorted(on_host[a] for a in on_host if weights.get(a, 0)))
    if taken:
        progress(f"host {host} is unreachable: no more traffic to {', '.join(taken)}")
    return taken
