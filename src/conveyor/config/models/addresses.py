"""Addresses of `conveyor.yml`: listen addresses ("host:port") and instance port ranges."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import PlainValidator, WithJsonSchema

from conveyor.config.durations import describe_value, problem

_HOST = re.compile(r"^[A-Za-z0-9.-]+$")
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]+$")


def parse_listen(text: str) -> tuple[str, int]:
    """Split a listen address into (host, port).

    "127.0.0.1:8080" -> ("127.0.0.1", 8080); "[::1]:80" -> ("::1", 80);
    ":8080" -> ("", 8080), where "" means all interfaces. Raises ValueError.
    """
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(
                f'expected "[ipv6]:port" like "[::1]:8080", got {describe_value(text)}'
            )
        host, port_text = text[1:end], text[end + 2 :]
        if not _IPV6.match(host):
            raise ValueError(f"invalid IPv6 address {describe_value(host)}")
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            raise ValueError(
                'expected "host:port" like "127.0.0.1:8080" (or ":8080" for all interfaces), '
                f"got {describe_value(text)}"
            )
        if ":" in host:
            raise ValueError(
                f'put an IPv6 address in brackets, like "[::1]:8080", got {describe_value(text)}'
            )
        if host and not _HOST.match(host):
            raise ValueError(f"invalid host {describe_value(host)}")
    if not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(f'expected a port number after the last ":", got {describe_value(text)}')
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"expected a port between 1 and 65535, got {port}")
    return host, port


def _check_listen(value: object) -> str:
    if not isinstance(value, str):
        raise problem(
            'expected "host:port" like "127.0.0.1:8080" (or ":8080" for all interfaces), '
            f"got {describe_value(value)}"
        )
    try:
        parse_listen(value.strip())
    except ValueError as exc:
        raise problem(str(exc)) from None
    return value.strip()


ListenAddress = Annotated[
    str,
    PlainValidator(_check_listen),
    WithJsonSchema(
        {"type": "string", "pattern": r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):[0-9]{1,5}$"}
    ),
]

DEFAULT_PORTS = "20000-29999"
_PORT_RANGE = re.compile(r"\s*([0-9]{1,5})\s*-\s*([0-9]{1,5})\s*")


def parse_port_range(text: str) -> range:
    """The instance ports of a `ports` value: "20000-29999" -> range(20000, 30000).

    Raises ValueError naming what is wrong.
    """
    match = _PORT_RANGE.fullmatch(text)
    if match is None:
        raise ValueError(
            f'expected a port range "LOW-HIGH" like "{DEFAULT_PORTS}", got {describe_value(text)}'
        )
    low, high = int(match.group(1)), int(match.group(2))
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        raise ValueError(f"expected ports between 1 and 65535, got {low}-{high}")
    if low > high:
        raise ValueError(f"the range starts above its end: {low}-{high} (write {high}-{low})")
    return range(low, high + 1)


def _check_port_range(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"{value}-{value}"
    if not isinstance(value, str):
        raise problem(
            f'expected a port range "LOW-HIGH" like "{DEFAULT_PORTS}", got {describe_value(value)}'
        )
    try:
        found = parse_port_range(value)
    except ValueError as exc:
        raise problem(str(exc)) from None
    return f"{found.start}-{found.stop - 1}"


PortRange = Annotated[
    str,
    PlainValidator(_check_port_range),
    WithJsonSchema({"type": "string", "pattern": r"^\s*[0-9]{1,5}\s*-\s*[0-9]{1,5}\s*$"}),
]
