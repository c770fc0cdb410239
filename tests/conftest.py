"""Session-wide rules: tests that need a real external component must run in CI.

A test that needs PostgreSQL or Chromium carries `@pytest.mark.needs_postgres`
or `@pytest.mark.needs_chromium` and skips locally when the component is
missing. Under CI (`PERPLEDGER_CI=1`, set by `.ci/run`, which installs both),
a skip of such a test fails the session: a green CI run means they ran.
"""

from __future__ import annotations

import os

import pytest

#: markers naming an external component a test starts for real
COMPONENT_MARKERS = ("needs_postgres", "needs_chromium")

_skipped: list[str] = []

# rich fixes a console's width when COLUMNS is set as it is made (pytest-xdist's
# workers set COLUMNS=80), so the tables tests read would be cut where a user's
# terminal would not cut them; tests that care pass COLUMNS to the command.
os.environ.pop("COLUMNS", None)


def pytest_configure(config: pytest.Config) -> None:
    """One shared writer key and operator key for every ledger the tests create.

    Real chains are signed from genesis (ledger.signing); instead of weakening that
    for tests, the session makes one key pair of each kind outside any data
    directory and points $PERPLEDGER_WRITER_KEY / $PERPLEDGER_OPERATOR_KEY at them
    (subprocesses inherit them). Tests about keys pass their own.
    """
    import atexit
    import shutil
    import tempfile

    from ledger.keys import OPERATOR_KEY_ENV, WRITER_KEY_ENV, create_key

    if os.environ.get(WRITER_KEY_ENV) and os.environ.get(OPERATOR_KEY_ENV):
        return
    keydir = tempfile.mkdtemp(prefix="perpledger-test-keys-")
    atexit.register(shutil.rmtree, keydir, True)
    os.environ[WRITER_KEY_ENV] = str(create_key(os.path.join(keydir, "writer.key")).path)
    os.environ[OPERATOR_KEY_ENV] = str(create_key(os.path.join(keydir, "operator.key")).path)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and any(m in report.keywords for m in COMPONENT_MARKERS):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("PERPLEDGER_CI") != "1" or not _skipped:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"CI: {len(_skipped)} test(s) needing PostgreSQL or Chromium were skipped; "
            "CI must run them (is the component installed?):", red=True)
        for nodeid in _skipped[:20]:
            reporter.write_line(f"  {nodeid}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


# The PostgreSQL fixtures (a private cluster per session, a database per test).
from tests.pg import pg_cluster, pg_dsn  # noqa: E402, F401
