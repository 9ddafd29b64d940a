"""The build cache's own bookkeeping: what a killed build left is cleared, only its own."""

from __future__ import annotations

from pathlib import Path

from conveyor.paths import Paths
from conveyor.releases import buildcache


def test_saving_clears_what_a_killed_build_of_the_service_left_and_nothing_else(
    tmp_path: Path,
) -> None:
    paths = Paths(home=tmp_path / "home")
    release = tmp_path / "release"
    (release / "cache").mkdir(parents=True)
    (release / "cache" / "entry").write_text("built\n")
    caches = buildcache.cache_dir(paths, "web").parent
    caches.mkdir(parents=True)
    killed = caches / ".incoming-web-0a1b2c3d"
    building = caches / ".incoming-web-api-0a1b2c3d"  # another service, building now
    for directory in (killed, building):
        directory.mkdir()

    said: list[str] = []
    buildcache.save(paths, "web", ["cache"], release, said.append)

    assert not killed.exists() and building.exists() and said == []
    assert (buildcache.cache_dir(paths, "web") / "cache" / "entry").read_text() == "built\n"
    restored = tmp_path / "next"
    restored.mkdir()
    buildcache.restore(paths, "web", ["cache"], restored, said.append)
    assert (restored / "cache" / "entry").read_text() == "built\n"
    assert said == ["web: build cache restored: cache"]
