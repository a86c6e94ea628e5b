"""The scan against a scripted store (responses): date bounds, drained seconds and odd dates."""
import io
import json
from email.utils import format_datetime as rfc2822
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from tap_bigcommerce.client import Client
from tap_bigcommerce.config import parse_catalog, parse_config
from tap_bigcommerce.discover import discover
from tap_bigcommerce.errors import ApiError
from tap_bigcommerce.output import Writer
from tap_bigcommerce.sync import Syncer

BASE = "https://api.example.test"
ORDERS = f"{BASE}/stores/abc/v2/orders"
START = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _sync(page_size=4, state=None):
    """Sync orders alone with one worker; returns (the records written, the final state)."""
    config = parse_config({"client_id": "cid", "access_token": "tok", "store_hash": "abc", "base_url": BASE,
                           "start_date": "2024-01-01T00:00:00Z", "page_size": page_size, "max_workers": 1,
                           "retry_base_delay": 0})
    catalog = discover()
    catalog["streams"] = [entry for entry in catalog["streams"] if entry["stream"] == "orders"]
    out = io.BytesIO()
    syncer = Syncer(Client(config, sleep=lambda seconds: None), config, state or {}, Writer(out))
    syncer.run(parse_catalog(catalog))
    messages = [json.loads(line) for line in out.getvalue().splitlines()]
    return [m["record"] for m in messages if m["type"] == "RECORD"], syncer.state


def _order(order_id, second):
    return {"id": order_id, "date_modified": rfc2822(START + timedelta(seconds=second)), "items_total": 0,
            "consignments": {"pickups": [], "shipping": [], "downloads": [], "email": {"gift_certificates": []}}}


def _params(call):
    return {key: values[0] for key, values in parse_qs(urlsplit(call.request.url).query).items()}


def _at(second):
    return (START + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S+00:00")


@responses.activate
def test_every_date_bound_is_widened_by_a_second_and_the_records_outside_are_not_handed_out():
    # The store answers as if its bounds were inclusive: the widened second before the start
    # comes back too, and must not be written (it was written by the run before).
    responses.get(ORDERS, json=[_order(1, -1), _order(2, 0), _order(3, 5)])
    records, state = _sync()
    assert [r["id"] for r in records] == [2, 3]
    assert _params(responses.calls[0])["min_date_modified"] == _at(-1)
    assert state["bookmarks"]["orders"]["date_modified"] == "2024-01-01T00:00:05Z"


@responses.activate
def test_a_full_page_of_the_second_before_the_range_reads_on_from_the_range():
    # Four records at the second before the bookmark fill a page: the scan learns the store's
    # lower bound is inclusive and asks again from the bookmark itself.
    state = {"bookmarks": {"orders": {"date_modified": "2024-01-01T00:00:10Z"}}}
    responses.get(ORDERS, json=[_order(i, 9) for i in range(1, 5)])
    responses.get(ORDERS, json=[_order(7, 10), _order(8, 11)])
    records, _ = _sync(state=state)
    assert [r["id"] for r in records] == [7, 8]
    assert [_params(call)["min_date_modified"] for call in responses.calls] == [_at(9), _at(10)]


@responses.activate
def test_a_drained_second_that_comes_back_without_its_records_stops_the_sync():
    # A full page shares one second; read alone, that second comes back empty (a store whose
    # filters do not do what they say): the sync stops rather than move on past it.
    responses.get(ORDERS, json=[_order(i, 3) for i in range(1, 5)])
    responses.get(ORDERS, status=204)
    with pytest.raises(ApiError, match="listed 4 records at 2024-01-01T00:00:03Z but returned none of them"):
        _sync()
    drain = _params(responses.calls[1])
    assert (drain["min_date_modified"], drain["max_date_modified"], drain["sort"]) == (_at(2), _at(4), "id:asc")


@responses.activate
def test_a_drained_second_keeps_only_that_second():
    # Five records share second 3. Read alone in id order (widened to seconds 2 to 4), that
    # second comes back with a record of second 2, and without 3 (edited meanwhile to second
    # 4) and 5 (deleted): only second 3 is handed out, then the scan reads on from second 4.
    responses.get(ORDERS, json=[_order(i, 3) for i in range(1, 6)])
    responses.get(ORDERS, json=[_order(1, 3), _order(2, 3), _order(3, 4), _order(4, 3), _order(6, 2)])
    responses.get(ORDERS, status=204)
    responses.get(ORDERS, json=[_order(3, 4)])
    records, state = _sync(page_size=5)
    assert [r["id"] for r in records] == [1, 2, 4, 3]
    assert _params(responses.calls[2])["min_id"] == "7"
    assert _params(responses.calls[3])["min_date_modified"] == _at(3)
    assert state["bookmarks"]["orders"]["date_modified"] == "2024-01-01T00:00:04Z"


@pytest.mark.parametrize("value", [None, ""])
@responses.activate
def test_a_record_without_a_date_modified_names_the_stream_and_the_record(value):
    responses.get(ORDERS, json=[_order(1, 1), {"id": 42, "date_modified": value}])
    with pytest.raises(ApiError, match=r"orders: the store returned record 42 with date_modified (None|''), "):
        _sync()
