"""The pure parts of building one service at a time: release ids and the holder's line."""

from __future__ import annotations

from datetime import UTC, datetime

from conveyor.releases.builder import new_release_id
from conveyor.releases.buildlock import describe_holder

NOW = datetime(2026, 12, 6, 10, 0, 5, tzinfo=UTC)


def test_release_id_is_the_second_and_the_source_digest() -> None:
    assert new_release_id(NOW, "abcdef0123456789", lambda _: False) == "20261206100005-abcdef01"


def test_release_id_takes_the_next_free_suffix() -> None:
    taken = {"20261206100005-abcdef01", "20261206100005-abcdef01-2"}
    assert new_release_id(NOW, "abcdef0123", taken.__contains__) == "20261206100005-abcdef01-3"


def test_holder_is_named_with_its_pid_and_start() -> None:
    holder = {"pid": 42, "user": "ann", "started": "2026-12-06T10:00:00+00:00"}
    assert describe_holder(holder, "api") == (
        "the build of api by ann (pid 42, started 2026-12-06 10:00:00 UTC) to finish"
    )


def test_a_holder_that_wrote_nothing_yet_is_another_build() -> None:
    assert describe_holder(None, "api") == "another build of api to finish"
