"""Fixtures for the end-to-end tests: the sandbox store, the target virtualenvs, a throw-away PostgreSQL.

The targets live in .venvs/ (scripts/setup-targets.sh). Outside CI a missing target or a PostgreSQL
that cannot start skips the tests that need it, with the reason; with CI=true it fails them instead.
"""
import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # e2e_pipeline, whatever pytest's import mode
from e2e_pipeline import ROOT, in_ci, rows_table, tool_path

sys.path.insert(0, str(ROOT / "scripts"))
import pg  # noqa: E402  (scripts/ is not a package)

ROW_COUNTS = {}


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: end-to-end: runs the tap into real targets (needs .venvs/)")
    config.addinivalue_line("markers", "slow: takes more than a minute (Meltano installs its plugins)")


def pytest_terminal_summary(terminalreporter):
    """Rows per stream per destination, for every destination a test loaded."""
    if not ROW_COUNTS:
        return
    streams = sorted({stream for counts in ROW_COUNTS.values() for stream in counts})
    dests = sorted(ROW_COUNTS)
    terminalreporter.section("rows loaded per stream per destination")
    width = max(len(stream) for stream in streams)
    terminalreporter.write_line(f"{'stream':<{width}}" + "".join(f"{d:>22}" for d in dests))
    for stream in streams:
        terminalreporter.write_line(
            f"{stream:<{width}}" + "".join(f"{ROW_COUNTS[d].get(stream, '-'):>22}" for d in dests))


def unavailable(reason):
    """Skip outside CI; fail in CI, where every end-to-end test must run."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: not skipping)")
    pytest.skip(reason)


@pytest.fixture
def tool():
    """tool(venv, executable) -> path, skipping (or failing in CI) when setup-targets.sh has not run."""
    def find(venv, executable):
        path = tool_path(venv, executable)
        if not path.exists():
            unavailable(f"{path} not found: run `bash scripts/setup-targets.sh`")
        return str(path)
    return find


@pytest.fixture
def record_rows(request):
    """record_rows(destination, {stream: rows}): print and log the table, and keep it for the summary."""
    def record(destination, counts):
        ROW_COUNTS[destination] = dict(counts)
        table = rows_table(f"rows in {destination}", counts)
        print("\n" + table)
        logging.getLogger("e2e").info("%s", table)
    return record


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server in a temporary directory for the whole session, always removed at the end."""
    server = pg.TempPostgres()
    try:
        server.start()
    except pg.PostgresUnavailable as exc:
        unavailable(f"PostgreSQL could not be started: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sandbox():
    """sandbox(**options) -> a started Sandbox, stopped after the test. Pacing is lifted: speed matters here."""
    from tap_bigcommerce.sandbox import Sandbox, SandboxOptions

    started = []

    def make(**options):
        options.setdefault("quota", 100000)
        options.setdefault("window_ms", 1000)
        box = Sandbox(SandboxOptions(**options)).start()
        started.append(box)
        return box

    yield make
    for box in started:
        box.stop()


# A store of a few hundred records per stream: big enough to span several pages, small enough for speed.
STORE = {"seed": 7, "coupons": 120, "customers": 250, "orders": 300, "products": 200, "subscribers": 120,
         "customer_attributes": 20, "customer_attribute_values": 150, "price_lists": 20, "product_metafields": 60,
         "order_metafields": 60, "customer_metafields": 60}


@pytest.fixture
def store_size():
    """Record counts (and seed) for the stores the end-to-end tests load."""
    return dict(STORE)


@pytest.fixture
def workdir(tmp_path):
    """A per-test directory for configs, catalogs, tap output and target output."""
    return Path(tmp_path)
