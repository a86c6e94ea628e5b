"""Endpoints with their own limit on requests at once (promotion codes and price-list records:
10; customer groups, categories, promotions: 40): the client never has more out, whatever the
store's quota would allow. The sandbox answers 429 past each limit, as BigCommerce does."""
import dataclasses
import threading

from tap_bigcommerce.client import Client
from tap_bigcommerce.config import parse_config
from tap_bigcommerce.streams import STREAMS_BY_NAME

CODES = STREAMS_BY_NAME["promotion_codes"]


def _fetch_at_once(store, stream, threads=8):
    """Fetch the codes of promotion 1 from `threads` threads at once, each through one client."""
    config = parse_config(dict(store.config(), max_workers=threads, max_retries=0))
    client = Client(config, sleep=lambda seconds: None)
    errors = []

    def fetch():
        try:
            client.get_page(stream, {"limit": 5}, path="promotions/1/codes")
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    workers = [threading.Thread(target=fetch) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return errors


def test_the_client_stays_under_an_endpoints_own_limit(sandbox):
    store = sandbox(promotions=3, promotion_codes=20, latency_ms=60, concurrency={"promotion_codes": 3})
    limited = dataclasses.replace(CODES, concurrency=3)
    assert _fetch_at_once(store, limited) == []
    assert store.over_limit == 0 and store.peak_in_flight["promotion_codes"] == 3
    assert sum(r["path"].endswith("/promotions/1/codes") for r in store.requests) == 8


def test_without_the_limit_the_store_would_have_answered_429(sandbox):
    # The same burst with no limit in the stream row: the sandbox's limit is real.
    store = sandbox(promotions=3, promotion_codes=20, latency_ms=60, concurrency={"promotion_codes": 3},
                    window_ms=300)  # the 429s' retries wait for the window to turn
    unlimited = dataclasses.replace(CODES, concurrency=None)
    _fetch_at_once(store, unlimited)
    assert store.over_limit > 0
