"""The config summary: written by a full load, used only while its key matches."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import conveyor.config.cache as cache
from conveyor.config import load_config
from conveyor.config.cache import ConfigSummary, EnvironmentSummary, load_summary

from .conftest import CONFIG, StatusProject


def test_full_load_writes_the_summary(project: StatusProject) -> None:
    assert load_summary(project.config) is None
    loaded = load_config()
    summary = load_summary(project.config)
    assert summary == ConfigSummary.of(loaded.config)
    assert summary == ConfigSummary(
        project="demo",
        environments={
            "staging": EnvironmentSummary(
                name="staging",
                url="http://127.0.0.1:18080",
                listen="127.0.0.1:18080",
                strategy="rolling",
                replicas={"api": 2, "web": 1},
                kinds={"api": "web", "web": "web"},
            ),
            "production": EnvironmentSummary(
                name="production",
                url="https://demo.example.com",
                listen="127.0.0.1:18090",
                strategy="immediate",
                replicas={"api": 3, "web": 1},
                kinds={"api": "web", "web": "web"},
            ),
        },
    )
    assert project.paths.config_summary.stat().st_mode & 0o777 == 0o600


def test_changed_file_invalidates(project: StatusProject) -> None:
    load_config()
    project.config.write_text(project.config.read_text().replace("replicas: 2", "replicas: 5"))
    assert load_summary(project.config) is None
    load_config()
    summary = load_summary(project.config)
    assert summary is not None
    assert summary.environments["staging"].replicas["api"] == 5


def test_referenced_variable_invalidates(
    project: StatusProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_config()
    monkeypatch.setenv("UNRELATED_VARIABLE", "x")
    assert load_summary(project.config) is not None

    monkeypatch.setenv("DEMO_STAGING_LISTEN", "127.0.0.1:19000")
    assert load_summary(project.config) is None
    load_config()
    summary = load_summary(project.config)
    assert summary is not None
    assert summary.environments["staging"].url == "http://127.0.0.1:19000"

    monkeypatch.setenv("DEMO_STAGING_LISTEN", "")  # set but empty: the default applies
    assert load_summary(project.config) is None
    monkeypatch.delenv("DEMO_STAGING_LISTEN")
    assert load_summary(project.config) is None


def test_variables_outside_the_summary_count_but_are_not_written(
    project: StatusProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_TOKEN", "s3cr3t-value")
    load_config()
    text = project.paths.config_summary.read_text()
    assert "s3cr3t-value" not in text
    assert '"DEMO_TOKEN"' in text
    assert load_summary(project.config) is not None
    monkeypatch.setenv("DEMO_TOKEN", "another")
    assert load_summary(project.config) is None


def test_other_conveyor_version_invalidates(
    project: StatusProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_config()
    monkeypatch.setattr(cache, "__version__", "99.0.0")
    assert load_summary(project.config) is None


def test_changed_model_code_invalidates(
    project: StatusProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An upgrade that changes one section's model (one module of config/models/) must
    # not be answered from a summary the old code wrote. A copy of the code is touched.
    code = tmp_path / "config-code"
    shutil.copytree(Path(cache.__file__).parent, code, ignore=shutil.ignore_patterns("*.pyc"))
    monkeypatch.setattr(cache, "_HERE", code)
    load_config()
    assert load_summary(project.config) is not None
    section = code / "models" / "environments.py"
    later = section.stat().st_mtime_ns + 10**9
    os.utime(section, ns=(later, later))
    assert load_summary(project.config) is None


@pytest.mark.parametrize("content", ["", "{", "[]", '{"format": 1}', '{"format": 0, "key": 1}'])
def test_unreadable_cache_is_a_miss(project: StatusProject, content: str) -> None:
    load_config()
    project.paths.config_summary.write_text(content)
    assert load_summary(project.config) is None
    load_config()
    assert load_summary(project.config) is not None


def test_validating_does_not_create_a_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_HOME", raising=False)
    (tmp_path / "conveyor.yml").write_text(CONFIG)
    load_config(tmp_path / "conveyor.yml")
    assert not (tmp_path / ".conveyor").exists()
