"""Following a deployment through the API: each step's line once, as it starts; the
record at the end; Ctrl-C stops the following and says the deployment goes on."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import httpx
import pytest
import typer

from conveyor.remote import commands
from conveyor.remote.client import Client

URL = "http://127.0.0.1:8700"
RECORD = {
    "id": "d1",
    "environment": "staging",
    "kind": "deploy",
    "status": "running",
    "releases": {"web": "r2"},
    "error": None,
}


def step(index: int, status: str, description: str = "") -> dict[str, object]:
    return {
        "index": index,
        "kind": "start",
        "service": "web",
        "description": description or f"step {index}",
        "status": status,
        "hosts": [],
        "note": None,
    }


def server(explanations: list[dict[str, object]], on_look: Callable[[int], None]) -> Client:
    """A server whose deployment d1 is explained as `explanations`, one per look."""
    looks = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/deployments/d1":
            looks.append(1)
            on_look(len(looks))
            return httpx.Response(200, json=explanations[min(len(looks), len(explanations)) - 1])
        if request.url.path == "/api/environments/staging/deployments":
            done = {**RECORD, "status": "succeeded", "notifications": [], "hook_failures": []}
            return httpx.Response(200, json=[done])
        return httpx.Response(404, json={"error": "unknown", "hint": None})

    return Client(URL, "cvt_x", transport=httpx.MockTransport(handler))


def test_each_step_is_said_once_as_it_starts_and_the_record_comes_from_the_history(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commands, "POLL_S", 0.0)
    explanations: list[dict[str, object]] = [
        {"status": "running", "steps": [step(1, "running")]},
        {"status": "running", "steps": [step(1, "done"), step(2, "skipped"), step(3, "running")]},
        {"status": "succeeded", "steps": [step(1, "done"), step(2, "skipped"), step(3, "done")]},
    ]
    record, explained = commands.follow(
        server(explanations, lambda _: None), RECORD, quiet=False, from_start=True
    )
    lines = [line.split(" ", 1)[1] for line in capsys.readouterr().err.splitlines()]
    assert lines == ["[web] step 1", "[web] step 3"]
    assert record == {**RECORD, "status": "succeeded"}  # without notifications, hook_failures
    assert explained["status"] == "succeeded"


def test_resuming_says_only_the_steps_that_run_now(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commands, "POLL_S", 0.0)
    explanations: list[dict[str, object]] = [
        {"status": "running", "steps": [step(1, "done"), step(2, "running")]},
        {"status": "succeeded", "steps": [step(1, "done"), step(2, "done")]},
    ]
    commands.follow(server(explanations, lambda _: None), RECORD, quiet=False, from_start=False)
    lines = [line.split(" ", 1)[1] for line in capsys.readouterr().err.splitlines()]
    assert lines == ["[web] step 2"]


def test_ctrl_c_stops_the_following_not_the_deployment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commands, "POLL_S", 0.0)

    def interrupt(look: int) -> None:
        if look == 2:  # Ctrl-C while a poll is answered
            os.kill(os.getpid(), signal.SIGINT)

    explanations: list[dict[str, object]] = [{"status": "running", "steps": [step(1, "running")]}]
    with pytest.raises(typer.Exit) as stopped:
        commands.follow(server(explanations, interrupt), RECORD, quiet=False, from_start=True)
    assert stopped.value.exit_code == 130
    err = " ".join(capsys.readouterr().err.split())
    assert f"stopped following d1: it goes on on the server ({URL})" in err
    assert "conveyor status staging" in err and "conveyor explain d1" in err
