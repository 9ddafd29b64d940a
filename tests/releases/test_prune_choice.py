"""Which releases `prune` (and the prune after each deploy) removes: the pure choice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conveyor.releases.prune import choose
from conveyor.store.records import ReleaseRecord

START = datetime(2026, 12, 1, tzinfo=UTC)


def releases(*ids: str) -> list[ReleaseRecord]:
    """Releases of service api, oldest first in `ids`; returned newest first as the store does."""
    made = [
        ReleaseRecord(id, "api", f"/r/{id}", "d", "s", START + timedelta(minutes=n), "me")
        for n, id in enumerate(ids)
    ]
    return made[::-1]


def ids(chosen: list[ReleaseRecord]) -> list[str]:
    return [r.id for r in chosen]


def test_never_deployed_releases_go_before_deployed_ones_and_the_newest_build_stays() -> None:
    five = releases("a", "b", "c", "d", "e")
    protected, deployed = {("api", "a")}, {("api", "c")}
    assert ids(choose(five, 3, protected, deployed)) == ["b", "d"]
    assert ids(choose(five, 2, protected, deployed)) == ["b", "c", "d"]


def test_a_protected_release_stays_even_when_more_must_stay_than_keep_allows() -> None:
    three = releases("a", "b", "c")
    protected = {("api", "a"), ("api", "b")}  # served, and the rollback target
    assert ids(choose(three, 1, protected, set())) == []
    assert ids(choose(three, 3, set(), set())) == []
