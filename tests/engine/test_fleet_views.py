"""What `status`, `logs` and `explain` show of instances on many hosts: the pure parts
(the e2e module tests/e2e/test_fleet_commands.py drives them on real test hosts)."""

from __future__ import annotations

import asyncio
import builtins
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from conveyor.engine.hosts_view import observe_hosts
from conveyor.engine.instance_logs import follow, prefix, tail
from conveyor.engine.serving import answers, mismatches
from conveyor.engine.step_hosts import instance_hosts, plan_hosts, step_hosts, where
from conveyor.errors import TargetError
from conveyor.store.records import InstanceRecord
from conveyor.targets.base import RUNNING, InstanceStatus


def record(name: str, host: str) -> InstanceRecord:
    return InstanceRecord(
        name=name,
        environment="fleet",
        service="web",
        release_id="r1",
        port=4000,
        host=host,
        address=f"10.0.0.{name[-1]}:4000",
        state="serving",
        created_at=datetime.now(UTC),
    )


# -- explain: the hosts of the steps that name only instances ------------------------

PLANS = [
    [
        {"kind": "ship", "host": "h1", "release": "r1"},
        {"kind": "start", "instances": ["web-1", "web-2"], "hosts": ["h1", "h2"]},
        {"kind": "wait_healthy", "instances": ["web-1", "web-2"]},
    ],
    [
        {"kind": "start", "instances": ["web-3"], "hosts": ["h3"]},
        {"kind": "smoke", "instance": "web-3"},
        {"kind": "drain", "instances": ["web-1"]},
        {"kind": "stop", "instances": ["web-2", "web-1"]},
        {"kind": "start", "instances": ["old-1"], "hosts": []},  # journaled before hosts
    ],
]


def test_instances_get_the_hosts_their_start_steps_placed_them_on() -> None:
    assert instance_hosts(PLANS) == {"web-1": "h1", "web-2": "h2", "web-3": "h3"}


def test_steps_on_instances_name_their_hosts_in_instance_order() -> None:
    hosts = instance_hosts(PLANS)
    assert step_hosts(PLANS[0][2], hosts) == ["h1", "h2"]
    assert step_hosts(PLANS[1][1], hosts) == ["h3"]
    assert step_hosts(PLANS[1][3], hosts) == ["h2", "h1"]


def test_steps_that_name_their_own_hosts_or_run_here_get_none() -> None:
    hosts = {**instance_hosts(PLANS), "web-9": "local"}
    assert step_hosts(PLANS[0][0], hosts) == []  # ship: "to h1" already
    assert step_hosts(PLANS[0][1], hosts) == []  # start: "on h1, h2" already
    assert step_hosts({"kind": "stop", "instances": ["web-9"]}, hosts) == []
    assert step_hosts({"kind": "stop", "instances": ["unknown"]}, hosts) == []
    assert step_hosts({"kind": "set_weights", "weights": [["web-1", 1]]}, hosts) == []


def test_a_deployment_lists_the_hosts_it_shipped_to_or_started_on() -> None:
    assert plan_hosts(PLANS[1]) == ["h3"]
    assert plan_hosts([*PLANS[0], {"kind": "ship", "host": "h0", "release": "r1"}]) == [
        "h0",
        "h1",
        "h2",
    ]
    assert plan_hosts([{"kind": "start", "instances": ["a"], "hosts": ["local"]}]) == []
    assert plan_hosts([{"kind": "set_weights", "weights": []}]) == []


def test_a_steps_line_gets_its_hosts_appended() -> None:
    assert where(["h1", "h2"]) == " on h1, h2"
    assert where([]) == ""


# -- logs: prefixes, one warning per unreachable host ------------------------------------


class Logs:
    """A target whose host h3 cannot be reached."""

    def __init__(self) -> None:
        self.down = {"web-3"}

    async def logs(self, name: str, lines: int) -> builtins.list[str]:
        if name in self.down:
            raise TargetError("host h3 (u@10.0.0.3:22) is unreachable: no answer")
        return [f"{name} line {i}" for i in range(lines)]

    async def follow(self, name: str, lines: int) -> AsyncIterator[str]:
        for line in await self.logs(name, lines):
            await asyncio.sleep(0)
            yield line


def test_a_line_is_prefixed_with_its_host_and_instance_on_other_hosts() -> None:
    assert prefix(record("web-3", "host2")) == "host2 web-3"
    assert prefix(record("web-1", "local")) == "web-1"


def collect(reader: Any, instances: list[InstanceRecord]) -> tuple[list[str], list[str]]:
    out: list[str] = []
    warnings: list[str] = []
    asyncio.run(reader(Logs(), instances, 2, out.append, warnings.append))
    return out, warnings


def test_tail_shows_the_reachable_hosts_and_names_the_other_once() -> None:
    instances = [record("web-1", "h1"), record("web-3", "h3"), record("web-2", "h2")]
    out, warnings = collect(tail, instances)
    assert out == [
        "h1 web-1 | web-1 line 0",
        "h1 web-1 | web-1 line 1",
        "h2 web-2 | web-2 line 0",
        "h2 web-2 | web-2 line 1",
    ]
    assert warnings == [
        "host h3 (u@10.0.0.3:22) is unreachable: no answer; the lines of its instances "
        "are not shown"
    ]


def test_follow_merges_every_host_and_warns_for_the_unreachable_one() -> None:
    instances = [record("web-1", "h1"), record("web-2", "h2"), record("web-3", "h3")]
    out, warnings = collect(follow, instances)
    assert sorted(out) == [
        "h1 web-1 | web-1 line 0",
        "h1 web-1 | web-1 line 1",
        "h2 web-2 | web-2 line 0",
        "h2 web-2 | web-2 line 1",
    ]
    assert out[:2] == ["h1 web-1 | web-1 line 0", "h2 web-2 | web-2 line 0"]  # interleaved
    assert warnings[0].startswith("host h3 (u@10.0.0.3:22) is unreachable")


# -- status: remote instances are not checked against this machine's ports ---------------


def report(instance: dict[str, Any]) -> dict[str, Any]:
    base = {"name": "web-1", "state": "serving", "port": 4000, "pid": None}
    return {
        "listen": "127.0.0.1:9",
        "services": [{"name": "web", "release": None, "instances": [{**base, **instance}]}],
    }


def test_an_instance_on_another_host_is_judged_by_its_hosts_supervisord() -> None:
    running = report({"host": "h2", "process": "running"})
    assert mismatches(running, {}, set()) == []
    missing = report({"host": "h2", "process": "missing"})
    assert mismatches(missing, {}, set()) == [
        "instance web-1 does not run on h2: its supervisord there has no such program"
    ]
    unreachable = report({"host": "h2", "process": "unreachable"})
    assert mismatches(unreachable, {}, set()) == []  # the warning says why


def test_a_local_instance_is_still_checked_against_its_port() -> None:
    local = report({"host": "local", "process": "running"})
    assert mismatches(local, {}, set()) == ["nothing listens on port 4000 of instance web-1"]


def test_a_router_on_another_host_is_judged_by_whether_it_answers_at_the_url() -> None:
    remote = {
        "listen": "10.0.0.1:80",
        "url": "http://10.0.0.1:80",
        "router_host": "h1",
        "services": [{"name": "web", "release": "r1", "instances": []}],
    }
    # This machine's kernel is not asked about host h1's port...
    assert mismatches(remote, {80: []}, set(), router_answers=True) == []
    # ...but a router there that does not answer is named.
    assert mismatches(remote, {}, set(), router_answers=False) == [
        "nothing answers at http://10.0.0.1:80 (the router on host h1), where web r1 should serve"
    ]
    local = {**remote, "router_host": "local"}
    assert mismatches(local, {}, set()) == [
        "nothing listens on 10.0.0.1:80, where web r1 should serve"
    ]


def test_answers_tells_a_listening_address_from_a_closed_one() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert answers(f"http://127.0.0.1:{port}")
    assert not answers(f"http://127.0.0.1:{port}", timeout=0.5)


# -- status: every host asked at once, one that does not answer named ---------------------


class Hosts:
    """An SSH target's host-by-host listing, host h3 unreachable."""

    def hosts(self) -> tuple[str, ...]:
        return ("h1", "h2", "h3")

    async def statuses_on(self, host: str) -> dict[str, InstanceStatus]:
        if host == "h3":
            raise TargetError("host h3 (u@10.0.0.3:22) is unreachable: no answer")
        name = f"web-{host[-1]}"
        return {name: InstanceStatus(name, RUNNING, pid=10)}


def test_the_hosts_that_answer_are_shown_and_the_other_is_named() -> None:
    view = asyncio.run(observe_hosts(Hosts()))  # type: ignore[arg-type]
    assert sorted(view.processes or {}) == ["web-1", "web-2"]
    assert view.unreachable == {"h3"}
    assert view.warnings == (
        "host h3 (u@10.0.0.3:22) is unreachable: no answer; its instances are shown as unreachable",
    )
