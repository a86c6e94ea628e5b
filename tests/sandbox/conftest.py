"""Fixtures for the sandbox tests: start stores on loopback and talk to them over real HTTP."""
import datetime as dt

import pytest
import requests

from tap_bigcommerce.sandbox import Sandbox, SandboxOptions

# A fixed end of the data range, so that two stores built from one seed are identical.
DATA_END = dt.datetime(2025, 6, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
TOKEN = "sandbox-token"


class Client:
    """A tiny client for one sandbox: GET a store path with the default token."""

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        self.session = requests.Session()

    def url(self, path: str) -> str:
        """The full URL of a path under the store, e.g. `v2/orders`."""
        return f"{self.sandbox.base_url}/stores/{self.sandbox.options.store_hash}/{path}"

    def get(self, path: str, params=None, token: str = TOKEN, **kwargs) -> requests.Response:
        """GET a store path."""
        headers = {"X-Auth-Token": token} if token is not None else {}
        return self.session.get(self.url(path), params=params, headers=headers, timeout=10, **kwargs)


@pytest.fixture
def make_store():
    """Start sandboxes with the given options (small stores by default); stop them afterwards."""
    started = []

    def make(**kwargs):
        kwargs.setdefault("data_end", DATA_END)
        sandbox = Sandbox(SandboxOptions(**kwargs)).start()
        started.append(sandbox)
        return sandbox, Client(sandbox)

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture(scope="module")
def store():
    """One default store shared by the read-only tests of a module."""
    with Sandbox(SandboxOptions(seed=7, quota=100000, data_end=DATA_END)) as sandbox:
        yield sandbox, Client(sandbox)
