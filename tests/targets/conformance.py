"""Behaviour every `Target` must have, written once, run against every real target.

A test module imports these tests (`from tests.targets.conformance import *`)
and provides a `harness` fixture (a `TargetHarness`): `test_local_conformance.py`
runs them on the local target (a real supervisord), `test_ssh_target.py` on two
real sshd test hosts. Tests here use only the `Target` protocol, plain HTTP and
the release the harness made; what is specific to one target is tested in its
own module.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from conveyor.targets.base import RUNNING, STARTING, UNKNOWN, InstanceSpec, Target

T = TypeVar("T")

PORTS = range(20000, 21000)

# The release every conformance test runs: an HTTP server on $HOST:$PORT that answers
# with its $GREETING and working directory, says so in its log, and says goodbye on SIGTERM.
APP = """\
import http.server, json, os, signal, sys

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(
            {"greeting": os.environ.get("GREETING"), "cwd": os.getcwd(), "pid": os.getpid()}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        print("request", self.path, flush=True)

def bye(signum, frame):
    print("bye", flush=True)
    sys.exit(0)

signal.signal(signal.SIGTERM, bye)
server = http.server.HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H)
print("listening on", os.environ["PORT"], flush=True)
server.serve_forever()
"""


class TargetHarness(Protocol):
    """A target with a host to run on and a release already where it runs."""

    target: Target
    host: str  # the host the tests start instances on
    release_dir: Path  # the deployer's path of a sealed release holding app.py

    def log_path(self, name: str) -> Path:
        """The `InstanceSpec.log_path` of an instance (the deployer's home's rule)."""
        ...

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the harness's event loop (its connections live there)."""
        ...


def make_spec(
    harness: TargetHarness, name: str, port: int, env: dict[str, str] | None = None
) -> InstanceSpec:
    return InstanceSpec(
        name=name,
        environment="test",
        service="web",
        release_id=harness.release_dir.name,
        release_dir=harness.release_dir,
        command=["python3", "app.py"],
        env={"PORT": str(port), **(env or {})},
        port=port,
        stop_timeout=5.0,
        log_path=harness.log_path(name),
        host=harness.host,
    )


def wait_until(predicate: Callable[[], T | None], timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)


def get(address: str, path: str = "/") -> dict[str, Any] | None:
    """The app's JSON answer at `host:port` and `path`, or None when nothing answers."""
    import json

    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=5)
    try:
        connection.request("GET", path)
        answer: dict[str, Any] = json.loads(connection.getresponse().read())
        return answer
    except OSError:
        return None
    finally:
        connection.close()


def refused(address: str) -> bool:
    host, _, port = address.rpartition(":")
    with socket.socket() as sock:
        sock.settimeout(5)
        return sock.connect_ex((host.strip("[]"), int(port))) != 0


@pytest.fixture
def started(harness: TargetHarness) -> Callable[..., tuple[InstanceSpec, str]]:
    """Start an instance of the app (stopped after the test); returns its spec and address."""
    names: list[str] = []

    def start(name: str, env: dict[str, str] | None = None) -> tuple[InstanceSpec, str]:
        endpoint = harness.run(harness.target.reserve(harness.host, set(), PORTS))
        spec = make_spec(harness, name, endpoint.port, {"HOST": endpoint.listen, **(env or {})})
        names.append(name)
        harness.run(harness.target.start(spec))
        wait_until(lambda: get(endpoint.address))
        return spec, endpoint.address

    yield start
    for name in names:
        harness.run(harness.target.stop(name, 5))


# -- reserve and start ---------------------------------------------------------------


def test_reserve_gives_a_free_port_of_the_range_on_the_host_and_avoids_taken_ones(
    harness: TargetHarness,
) -> None:
    taken = set(range(20000, 20998))
    endpoint = harness.run(harness.target.reserve(harness.host, taken, PORTS))
    assert endpoint.host == harness.host
    assert endpoint.port in (20998, 20999)
    assert endpoint.address.endswith(f":{endpoint.port}")


def test_an_instance_answers_on_its_address_from_its_release_with_its_environment(
    harness: TargetHarness, started: Callable[..., tuple[InstanceSpec, str]]
) -> None:
    spec, address = started("conf-answer-1", {"GREETING": 'it\'s "quoted"; $HOME %(here)s'})
    answer = get(address)
    assert answer is not None
    assert answer["greeting"] == 'it\'s "quoted"; $HOME %(here)s'
    assert Path(answer["cwd"]).name == harness.release_dir.name
    status = wait_until(
        lambda: (s := harness.run(harness.target.status(spec.name))).state == RUNNING and s
    )
    assert status.pid == answer["pid"]
    assert status.started_at is not None and abs(status.started_at - time.time()) < 60
    assert spec.name in [s.name for s in harness.run(harness.target.list())]


def test_start_is_idempotent_and_a_changed_spec_replaces_the_instance(
    harness: TargetHarness, started: Callable[..., tuple[InstanceSpec, str]]
) -> None:
    spec, address = started("conf-again-1", {"GREETING": "one"})
    first = get(address)
    assert first is not None
    harness.run(harness.target.start(spec))
    assert get(address) == first  # the same process, untouched
    changed = InstanceSpec(**{**spec.__dict__, "env": {**spec.env, "GREETING": "two"}})
    harness.run(harness.target.start(changed))
    second = wait_until(lambda: (a := get(address)) and a["greeting"] == "two" and a)
    assert second["pid"] != first["pid"]


# -- stop ----------------------------------------------------------------------------


def test_stop_sends_sigterm_waits_for_the_exit_and_forgets_the_instance(
    harness: TargetHarness, started: Callable[..., tuple[InstanceSpec, str]]
) -> None:
    spec, address = started("conf-stop-1")
    other, other_address = started("conf-stop-2")
    harness.run(harness.target.stop(spec.name, 5))
    assert refused(address)  # gone when stop returns, not some time later
    assert harness.run(harness.target.status(spec.name)).state == UNKNOWN
    names = [s.name for s in harness.run(harness.target.list())]
    assert spec.name not in names and other.name in names
    assert get(other_address) is not None
    assert "bye" in harness.run(harness.target.logs(spec.name, 5))


def test_stop_and_status_of_an_unknown_instance(harness: TargetHarness) -> None:
    harness.run(harness.target.stop("conf-never-1", 5))
    assert harness.run(harness.target.status("conf-never-1")).state == UNKNOWN


# -- logs ----------------------------------------------------------------------------


def test_logs_tail_and_follow(
    harness: TargetHarness, started: Callable[..., tuple[InstanceSpec, str]]
) -> None:
    spec, address = started("conf-logs-1")
    for _ in range(5):
        get(address, "/tail")  # each request logs a line
    # supervisord copies the output into the log on its own time: wait for all five lines.
    wait_until(lambda: harness.run(harness.target.logs(spec.name, 10)).count("request /tail") == 5)
    assert harness.run(harness.target.logs(spec.name, 3)) == ["request /tail"] * 3

    async def follow() -> list[str]:
        got: list[str] = []
        stream = harness.target.follow(spec.name, 1)
        async for line in stream:
            got.append(line)
            if len(got) == 1:
                await asyncio.to_thread(get, address, "/follow")
            if len(got) == 2:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        return got

    assert harness.run(asyncio.wait_for(follow(), 20)) == ["request /tail", "request /follow"]


# -- one-off commands -----------------------------------------------------------------


def test_run_command_in_the_release_with_env_output_and_exit_code(
    harness: TargetHarness, tmp_path: Path
) -> None:
    log = tmp_path / "command.log"
    result = harness.run(
        harness.target.run_command(
            ["sh", "-c", 'echo "$GREETING"; pwd; ls app.py; echo oops >&2; exit 3'],
            harness.release_dir,
            {"GREETING": "hello 'there' $x"},
            timeout=30,
            log_path=log,
        )
    )
    assert result.exit_code == 3 and not result.timed_out
    lines = result.output.splitlines()
    assert lines[0] == "hello 'there' $x"
    assert Path(lines[1]).name == harness.release_dir.name
    assert "app.py" in lines and "oops" in lines
    assert "hello 'there' $x" in log.read_text()


def test_run_command_timeout_kills_it(harness: TargetHarness) -> None:
    started = time.monotonic()
    result = harness.run(
        harness.target.run_command(["sleep", "120"], harness.release_dir, {}, timeout=1)
    )
    assert result.timed_out
    assert time.monotonic() - started < 30  # not the two minutes of the sleep


def test_status_of_a_starting_or_running_instance_has_a_pid(
    harness: TargetHarness, started: Callable[..., tuple[InstanceSpec, str]]
) -> None:
    spec, _ = started("conf-pid-1")
    status = harness.run(harness.target.status(spec.name))
    assert status.state in (STARTING, RUNNING) and status.pid


def test_run_attached_passes_output_and_the_exit_status(
    harness: TargetHarness, capfd: pytest.CaptureFixture[str]
) -> None:
    code = harness.run(
        harness.target.run_attached(
            ["sh", "-c", 'echo "out $GREETING"; ls app.py; echo "err" >&2; exit 5'],
            harness.release_dir,
            {"GREETING": "hi 'you'"},
        )
    )
    captured = capfd.readouterr()
    assert code == 5
    assert captured.out.splitlines() == ["out hi 'you'", "app.py"]
    assert captured.err.splitlines()[-1] == "err"
