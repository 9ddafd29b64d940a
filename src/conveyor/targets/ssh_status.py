"""The status of a host's programs, asked cheaply and once for every instance on it.

Every deploy asks each host for its programs' states many times: when planning,
before stopping an instance (for its process group), and at every poll while an
instance boots. `supervisorctl status` costs a Python start-up that imports
xmlrpc.client, http.client, email and importlib.metadata (about 0.1 s of CPU on
the host each time). `STATUS` asks supervisord the same question over its control
socket (XML-RPC `supervisor.getAllProcessInfo`) with only the standard library's
socket and XML parser, under `python3 -S`, and prints the lines `supervisorctl
status` prints (`name STATE description`), which `ssh_programs.parse_status` reads.
Nothing when supervisord does not answer (as `supervisorctl status` prints no
program then).

`SharedQueries` runs one query per host at a time: callers that ask while one is
under way (the instances of one host waiting to get healthy) share its answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import PurePosixPath
from typing import Any, Generic, TypeVar

# Run as `python3 -S -c STATUS SOCKET`.
STATUS = r"""
import socket, sys
import xml.etree.ElementTree as ET
body = (b"<?xml version='1.0'?><methodCall><methodName>supervisor.getAllProcessInfo"
        b"</methodName><params></params></methodCall>")
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
try:
    s.connect(sys.argv[1])
    s.sendall(b"POST /RPC2 HTTP/1.0\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n"
              % len(body) + body)
    chunks = []
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
except OSError:
    sys.exit(0)
head, _, xml = b"".join(chunks).partition(b"\r\n\r\n")
if b" 200 " not in head.split(b"\r\n")[0] + b" ":
    sys.exit(0)
def value(node):
    kind = node[0] if len(node) else None
    return (kind.text or "") if kind is not None else (node.text or "")
for struct in ET.fromstring(xml).iter("struct"):
    info = {m.findtext("name"): value(m.find("value")) for m in struct.findall("member")}
    name, group = info.get("name", ""), info.get("group", "")
    shown = name if group in ("", name) else group + ":" + name
    print(shown, info.get("statename", "UNKNOWN"), info.get("description", ""))
"""

_LIST_THEN_STATUS = 'ls "$1" 2>/dev/null; echo "--- status"; shift; "$@"; true'


def status_argv(programs: PurePosixPath, socket: PurePosixPath) -> list[str]:
    """argv that lists the program files in `programs`, prints `--- status`, then the
    status lines of supervisord's programs (asked on its control socket `socket`)."""
    return [
        "sh",
        "-c",
        _LIST_THEN_STATUS,
        "sh",
        str(programs),
        "python3",
        "-S",
        "-c",
        STATUS,
        str(socket),
    ]


T = TypeVar("T")


class SharedQueries(Generic[T]):
    """At most one query per key under way; who asks meanwhile gets its answer."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Future[T]] = {}

    async def get(self, key: str, query: Callable[[], Coroutine[Any, Any, T]]) -> T:
        running = self._running.get(key)
        if running is None or running.get_loop() is not asyncio.get_running_loop():
            running = asyncio.ensure_future(query())
            self._running[key] = running

            def forget(done: asyncio.Future[T], key: str = key) -> None:
                if self._running.get(key) is done:
                    del self._running[key]
                if not done.cancelled():
                    done.exception()  # retrieved: said by the callers, if any is left

            running.add_done_callback(forget)
        # One caller cancelled (a step interrupted) must not cancel the others' answer.
        return await asyncio.shield(running)
