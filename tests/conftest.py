"""Fixtures: a folder for the tap's files and sandbox stores on loopback."""
import pytest

from tap_bigcommerce.sandbox import Sandbox, SandboxOptions


@pytest.fixture
def workdir(tmp_path):
    """A folder for config, catalog and state files."""
    return tmp_path


@pytest.fixture
def sandbox():
    """Start sandbox stores on demand; every one is stopped at the end of the test."""
    started = []

    def start(**options):
        options.setdefault("seed", 7)
        # No quota unless a test gives one: the tests that are about pacing do, and the rest should
        # not wait for rate-limit windows (order coupons cost a request per order with a coupon).
        options.setdefault("quota", 10**6)
        store = Sandbox(SandboxOptions(**options))
        store.start()
        started.append(store)
        return store

    yield start
    for store in started:
        store.stop()
