"""The pure parts of `conveyor setup` and `conveyor hosts`: what setup does on a probed
host, the supervisord.conf it writes, and how host checks read `df`, `date` and keys.
(End to end against real sshd hosts: tests/e2e/test_hosts_cli.py.)"""

from __future__ import annotations

from dataclasses import replace

import pytest

from conveyor.errors import TargetError
from conveyor.ssh.health import HostHealth, clock_skew, parse_df, problems
from conveyor.ssh.hosts import HostSpec
from conveyor.ssh.layout import RemoteLayout
from conveyor.ssh.setup import Plan, Probe, directories, plan, python_problem, supervisord_conf
from conveyor.ssh.trust import key_status, rounds

LAYOUT = RemoteLayout("shop")
HOME = "/home/deploy"
FRESH = Probe(
    home=HOME, python=(3, 11, 2), modes={}, conf=None, lib_version=None, supervisord_up=False
)
DONE = Probe(
    home=HOME,
    python=(3, 11, 2),
    modes={str(d): 0o700 for d in directories(LAYOUT)},
    conf=supervisord_conf(LAYOUT, HOME),
    lib_version="4.3.0",
    supervisord_up=True,
)


def test_a_fresh_host_gets_everything() -> None:
    assert plan(FRESH, LAYOUT, "4.3.0") == Plan(
        make_dirs=tuple(str(d) for d in directories(LAYOUT)),
        ship_supervisor=True,
        write_conf=True,
        start_supervisord=True,
    )


def test_a_set_up_host_gets_nothing() -> None:
    assert plan(DONE, LAYOUT, "4.3.0").nothing_to_do


@pytest.mark.parametrize(
    ("probe", "expected"),
    [
        (replace(DONE, supervisord_up=False), Plan(start_supervisord=True)),
        (
            replace(DONE, modes={**DONE.modes, ".conveyor/shop/run": 0o755}),
            Plan(fix_modes=(".conveyor/shop/run",)),
        ),
        (
            replace(DONE, lib_version="4.2.5"),
            Plan(ship_supervisor=True, conf_changed_while_running=True),
        ),
        (
            replace(DONE, conf="edited by hand"),
            Plan(write_conf=True, conf_changed_while_running=True),
        ),
    ],
)
def test_only_what_is_missing_is_done(probe: Probe, expected: Plan) -> None:
    assert plan(probe, LAYOUT, "4.3.0") == expected


def test_supervisord_conf_uses_absolute_paths_a_private_socket_and_umask() -> None:
    conf = supervisord_conf(LAYOUT, HOME)
    assert "file=/home/deploy/.conveyor/shop/run/supervisor.sock\nchmod=0700\n" in conf
    assert "umask=077\n" in conf
    assert "serverurl=unix:///home/deploy/.conveyor/shop/run/supervisor.sock\n" in conf
    assert "[include]\nfiles = /home/deploy/.conveyor/shop/supervisor/programs/*.conf\n" in conf
    assert "childlogdir=/home/deploy/.conveyor/shop/logs/instances\n" in conf
    with pytest.raises(TargetError, match="cannot be written into a supervisord config"):
        supervisord_conf(LAYOUT, "/home/my user")


def test_python3_must_be_there_and_recent() -> None:
    assert python_problem((3, 8, 0)) is None
    assert python_problem(None) == "python3 is not installed"
    assert python_problem((3, 6, 9)) == "python3 is 3.6.9; supervisord needs 3.8 or later"


def test_host_check_readings() -> None:
    df = (
        "Filesystem     1024-blocks      Used Available Capacity Mounted on\n"
        "/dev/vda        263112772  29334648 76519872      28% /\n"
    )
    assert parse_df(df) == 76519872 * 1024
    assert parse_df("") is None
    assert clock_skew("1000.5\n", 999.0, 1000.0) == pytest.approx(1.0)
    assert clock_skew("garbage", 1.0, 2.0) is None
    host = HostSpec("web1", "10.0.0.5", "deploy")
    late = HostHealth(host, True, "trusted", None, "up", 10 * 1024**3, -2.5)
    assert problems(late) == ["its clock is -2.5 s off this machine's: run NTP"]
    fresh = HostHealth(host, True, "unknown")
    assert problems(fresh) == ["its host key is not trusted yet: run `conveyor hosts trust ENV`"]


def test_key_standing_and_jump_hosts_first() -> None:
    assert key_status("ssh-ed25519 AAA comment", ["ssh-ed25519 AAA"]) == "trusted"
    assert key_status("ssh-ed25519 AAA", ["ssh-ed25519 BBB"]) == "changed"
    assert key_status("ssh-ed25519 AAA", []) == "unknown"
    bastion = HostSpec("bastion", "gw", "ops")
    inner = HostSpec(
        "inner", "10.0.0.9", "ops", jump=HostSpec("mid", "10.0.0.8", "ops", jump=bastion)
    )
    mid = inner.jump
    assert mid is not None
    web = HostSpec("web", "10.0.0.5", "ops", jump=bastion)
    assert rounds([inner, web, mid, bastion]) == [[bastion], [web, mid], [inner]]
