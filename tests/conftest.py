"""Run the longest test files first, in temporary directories the app's user can pass.

`./scripts/test` gives each of two workers one file at a time, in collection
order. Started last, a file of long end-to-end tests leaves the other worker idle
at the end; started first, the short files fill in around it (longest first is
the classic way to balance such a schedule).

Run as root, Conveyor runs the apps it deploys as the unprivileged `conveyor` user,
which must pass through the test's directories to its releases and data, as it would
through /srv on a server. pytest keeps its own `/tmp/pytest-of-root` at mode 0700 (it
tightens it again at every start), so the session's temporary directories live in a
directory of their own instead (kept when a test failed, for a look).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from conveyor.releases.seal import make_removable


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    _own_test_hosts(config)
    if hasattr(config, "workerinput") or config.option.basetemp:
        return  # an xdist worker gets a directory of the main process's (or the user's)
    base = Path(tempfile.mkdtemp(prefix="conveyor-tests-"))
    base.chmod(0o711)
    config.option.basetemp = str(base)
    config.stash[_OWN_BASETEMP] = base


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    base = session.config.stash.get(_OWN_BASETEMP, None)
    if base is not None and exitstatus == 0:
        make_removable(base)
        shutil.rmtree(base, ignore_errors=True)


_OWN_BASETEMP = pytest.StashKey[Path]()


def _own_test_hosts(config: pytest.Config) -> None:
    """Each xdist worker gets a set of test hosts of its own (`scripts/testhosts`): worker
    N uses set `CONVEYOR_TESTHOSTS_SET` + N, so two files on test hosts run at the same
    time instead of one waiting for the other's hosts. A second run beside this one on
    the same machine takes other sets (`CONVEYOR_TESTHOSTS_SET=5`)."""
    worker = getattr(config, "workerinput", {}).get("workerid", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        base = int(os.environ.get("CONVEYOR_TESTHOSTS_SET", "0") or "0")
        os.environ["CONVEYOR_TESTHOSTS_SET"] = str(base + int(worker[2:]))


def _passable_temp_dirs() -> None:
    """Every temporary directory pytest makes (its base and each test's) is 0711."""
    factory = pytest.TempPathFactory
    make, base = factory.mktemp, factory.getbasetemp

    def mktemp(self: pytest.TempPathFactory, basename: str, numbered: bool = True) -> Path:
        path = make(self, basename, numbered)
        path.chmod(0o711)
        return path

    def getbasetemp(self: pytest.TempPathFactory) -> Path:
        path = base(self)
        path.chmod(0o711)
        return path

    factory.mktemp = mktemp  # type: ignore[method-assign]
    factory.getbasetemp = getbasetemp  # type: ignore[method-assign]


_passable_temp_dirs()

# The longest files first (seconds of a full run on 2 cores, `--junitxml`, with other
# work beside it), among the files of the same number of tests: xdist's loadfile orders
# files by their number of tests first. (Its `--no-loadscope-reorder` keeps this order
# instead; tried, it ran every heavy end-to-end file at once at the start, and two
# timing checks failed under that load: not used.)
LONGEST_FIRST = (
    "e2e/test_progressive.py",  # 699
    "e2e/test_databases.py",  # 511
    "e2e/test_fleet_erp.py",  # 442
    "e2e/test_faults_state.py",  # 372
    "e2e/test_fleet_faults.py",  # 287
    "e2e/test_faults_supervisord.py",  # 270
    "e2e/test_erp.py",  # 227
    "e2e/test_fleet_apps.py",  # 215
    "e2e/test_recovery.py",  # 180
    "e2e/test_fleet_strategies.py",  # 170
    "e2e/test_python_apps.py",  # 166
    "e2e/test_jobs.py",  # 163
    "e2e/test_fleet_workers.py",  # 146
    "e2e/test_fleet_router.py",  # 128
    "releases/test_builder.py",  # 127
    "databases/test_db_cli.py",  # 126
    "targets/test_ssh_target.py",  # 125
    "e2e/test_tls.py",  # 114
    "e2e/test_django_migrations.py",  # 113
    "e2e/test_shop.py",  # 105
    "e2e/test_operations.py",  # 99
    "e2e/test_workers.py",  # 96
    "e2e/test_node_apps.py",  # 94
    "e2e/test_shutdown.py",  # 93
    "e2e/test_express_app.py",  # 91
    "e2e/test_verify.py",  # 88
    "e2e/test_policies.py",  # 86
    "e2e/test_dashboard.py",  # 83
    "e2e/test_run.py",  # 82
    "e2e/test_fleet_commands.py",  # 81
    "config/test_config_fuzz.py",  # 72
    "e2e/test_hooks_notify.py",  # 70
    "e2e/test_fleet_accessories.py",  # 70
    "e2e/test_accessories.py",  # 68
    "store/test_store_repository.py",  # 64
    "e2e/test_secrets.py",  # 61
    "e2e/test_fleet_verify.py",  # 59
    "e2e/test_flask_app.py",  # 58
    "cli/test_cli_errors.py",  # 54
    "pipeline/test_pipeline_cli.py",  # 53
)


def _rank(item: pytest.Item) -> int:
    path = item.path.as_posix()
    for rank, name in enumerate(LONGEST_FIRST):
        if path.endswith(name):
            return rank
    return len(LONGEST_FIRST)


# Outside tests/e2e, files that also drive the whole CLI on a project with real tools
# and servers (the pipeline's linters and audits, backups of real databases): the
# full suite runs them, the fast loop does not.
WHOLE_CLI = ("pipeline/test_pipeline_cli.py", "databases/test_db_cli.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path.as_posix()
        if "/tests/e2e/" in path or path.endswith(WHOLE_CLI):
            item.add_marker(pytest.mark.e2e)  # `-m "not e2e"`: the fast loop
    items.sort(key=_rank)  # stable: the rest keep their order


@pytest.fixture(autouse=True)
def _no_registered_secrets() -> object:
    """Each test starts without the secret values an earlier one registered for masking."""
    from conveyor.redaction import forget_secrets

    forget_secrets()
    yield
    forget_secrets()
