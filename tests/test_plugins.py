"""The registry of targets and routers: the names conveyor.yml accepts, what they build."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import plugins
from conveyor.config import load_config
from conveyor.engine.runtime import Runtime
from conveyor.routers.caddy import CaddyRouter
from conveyor.routers.haproxy import HAProxyRouter
from conveyor.targets.local import LocalTarget

CONFIG = textwrap.dedent(
    """
    project: demo
    services:
      api: {run: "true"}
    environments:
      staging: {listen: "127.0.0.1:18080"}
      production: {listen: "127.0.0.1:18081", router: haproxy}
      qa: {listen: "127.0.0.1:18082", router: caddy, target: local}
    """
)


@pytest.fixture
def rt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    (tmp_path / "conveyor.yml").write_text(CONFIG)
    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "home"))
    runtime = Runtime.open(load_config(tmp_path / "conveyor.yml", environ={}), "tester")
    yield runtime
    runtime.close()


def test_each_environment_gets_the_registered_plugin_it_names(rt: Runtime) -> None:
    assert isinstance(rt.router_for("staging"), CaddyRouter)
    assert isinstance(rt.router_for("production"), HAProxyRouter)
    assert isinstance(rt.target_for("staging"), LocalTarget)
    # Plugins are built once per command: a shared one serves every environment; Caddy
    # once per environment (an environment's router may run on one of its hosts).
    assert rt.target_for("staging") is rt.target_for("production")
    assert rt.router_for("staging") is rt.router_for("staging")
    assert rt.router_for("staging") is not rt.router_for("qa")


def test_registry_names_match_the_config_choices() -> None:
    from conveyor.config.models import EnvironmentConfig

    schema = EnvironmentConfig.model_json_schema()
    assert schema["properties"]["router"]["enum"] == list(plugins.ROUTERS)
    target = schema["properties"]["target"]
    assert target.get("enum", [target.get("const")]) == list(plugins.TARGETS)
    assert plugins.DEFAULT_TARGET == "local"


def test_every_registered_factory_and_ensure_hook_exists() -> None:
    for registry in (plugins.TARGETS, plugins.ROUTERS):
        for plugin in registry.values():
            for path in filter(None, (plugin.factory, plugin.ensure)):
                assert callable(plugins._load(path)), path
