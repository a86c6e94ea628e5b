"""Streams read with their parent's pages (order line items, shipping consignments, order coupons)
and the refunds window, against a scripted store (responses)."""
import io
import json
import logging
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime as rfc2822
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
STORE = f"{BASE}/stores/abc"
START = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _sync(names, state=None, page_size=50, now=None, **settings):
    """Sync the named streams with one worker; returns ({stream: [records]}, the final state)."""
    config = parse_config({"client_id": "cid", "access_token": "tok", "store_hash": "abc", "base_url": BASE,
                           "start_date": "2024-01-01T00:00:00Z", "page_size": page_size, "max_workers": 1,
                           "retry_base_delay": 0, **settings})
    catalog = discover()
    catalog["streams"] = [entry for entry in catalog["streams"] if entry["stream"] in names]
    out = io.BytesIO()
    clock = (lambda: now) if now else None
    syncer = Syncer(Client(config, sleep=lambda seconds: None), config, state or {}, Writer(out), clock=clock)
    syncer.run(parse_catalog(catalog))
    records = {}
    for line in out.getvalue().splitlines():
        message = json.loads(line)
        if message["type"] == "RECORD":
            records.setdefault(message["stream"], []).append(message["record"])
    return records, syncer.state


def _line(line_id, order_id, quantity=1, address=0, kind="physical"):
    return {"id": line_id, "order_id": order_id, "quantity": quantity, "order_address_id": address,
            "type": kind, "total_inc_tax": "10.0000"}


def _order(order_id, second, shipping=(), downloads=(), coupon="0.0000", items_total=None):
    """An order as the list returns it with include=consignments.line_items,fees."""
    lines = [line for consignment in shipping for line in consignment["line_items"]] + list(downloads)
    return {"id": order_id, "date_modified": rfc2822(START + timedelta(seconds=second)),
            "coupon_discount": coupon, "fees": [],
            "items_total": sum(line["quantity"] for line in lines) if items_total is None else items_total,
            "consignments": {"pickups": [], "shipping": list(shipping),
                             "downloads": [{"recipient_email": "a@example.com", "line_items": list(downloads)}]
                             if downloads else [], "email": {"gift_certificates": []}}}


def _shipping(address_id, order_id, lines):
    return {"id": address_id, "first_name": "Ada", "base_cost": 5.1, "line_items": lines}


def _params(call):
    return {key: values[0] for key, values in parse_qs(urlsplit(call.request.url).query).items()}


@responses.activate
def test_line_items_and_shipping_consignments_come_from_the_orders_pages_alone():
    orders = [_order(1, 0, shipping=[_shipping(11, 1, [_line(101, 1, 2, 11)]), _shipping(12, 1, [_line(102, 1, 1, 12)])],
                     downloads=[_line(103, 1, 1, 0, "digital")]),
              _order(2, 1, shipping=[_shipping(21, 2, [_line(201, 2, 3, 21)])])]
    responses.get(f"{STORE}/v2/orders", json=orders)
    records, state = _sync({"orders", "order_line_items", "order_shipping_addresses"})
    assert len(responses.calls) == 1  # no request per order
    params = _params(responses.calls[0])
    assert params["include"] == "consignments.line_items,fees" and params["consignment_structure"] == "object"
    lines = {line["id"]: line for line in records["order_line_items"]}
    assert sorted(lines) == [101, 102, 103, 201]
    assert (lines[101]["consignment_type"], lines[101]["consignment_id"], lines[101]["order_id"]) == ("shipping", 11, 1)
    assert (lines[103]["consignment_type"], lines[103]["consignment_id"]) == ("download", None)
    assert lines[201]["date_modified"] == "2024-01-01T00:00:01Z" and lines[201]["total_inc_tax"] == "10.0000"
    shipping = records["order_shipping_addresses"]
    assert [(s["id"], s["order_id"]) for s in shipping] == [(11, 1), (12, 1), (21, 2)]
    assert shipping[0]["base_cost"] == 5.1 and "line_items" not in shipping[0]
    assert len(records["orders"][0]["consignments"]["shipping"]) == 2
    marks = {name: state["bookmarks"][name]["date_modified"]
             for name in ("orders", "order_line_items", "order_shipping_addresses")}
    assert set(marks.values()) == {"2024-01-01T00:00:01Z"}


@responses.activate
def test_an_order_whose_embedded_lines_fall_short_has_them_read_whole_once(caplog):
    all_lines = [_line(300 + n, 3, 1, 31) for n in range(5)]
    capped = _order(3, 0, shipping=[_shipping(31, 3, all_lines[:2])], items_total=5)
    fine = _order(4, 1, shipping=[_shipping(41, 4, [_line(401, 4, 1, 41)])])
    responses.get(f"{STORE}/v2/orders", json=[capped, fine])
    responses.get(f"{STORE}/v2/orders", status=204)
    responses.get(f"{STORE}/v2/orders/3/products", json=all_lines[:2])  # pages of two
    responses.get(f"{STORE}/v2/orders/3/products", json=all_lines[2:4])
    responses.get(f"{STORE}/v2/orders/3/products", json=all_lines[4:])
    with caplog.at_level(logging.INFO):
        records, _ = _sync({"orders", "order_line_items"}, page_size=2)
    product_calls = [_params(c) for c in responses.calls if "/products" in c.request.url]
    assert [c["page"] for c in product_calls] == ["1", "2", "3"]
    assert sorted(line["id"] for line in records["order_line_items"]) == [300, 301, 302, 303, 304, 401]
    order = next(o for o in records["orders"] if o["id"] == 3)
    assert [line["id"] for line in order["consignments"]["shipping"][0]["line_items"]] == [300, 301, 302, 303, 304]
    assert "orders: 1 orders had more line items than their consignments embedded" in caplog.text


@responses.activate
def test_order_coupons_are_fetched_only_for_orders_with_a_coupon_discount():
    responses.get(f"{STORE}/v2/orders", json=[_order(5, 0, coupon="5.0000"), _order(6, 1)])
    responses.get(f"{STORE}/v2/orders/5/coupons",
                  json=[{"id": 9, "coupon_id": 2, "order_id": 5, "code": "SAVE", "amount": 5, "type": 2, "discount": 5.0}])
    records, state = _sync({"order_coupons"})
    assert [urlsplit(c.request.url).path for c in responses.calls] == ["/stores/abc/v2/orders",
                                                                       "/stores/abc/v2/orders/5/coupons"]
    assert records == {"order_coupons": [{"id": 9, "coupon_id": 2, "order_id": 5, "code": "SAVE", "amount": "5",
                                          "type": 2, "discount": 5.0, "date_modified": "2024-01-01T00:00:00Z"}]}
    assert set(state["bookmarks"]) == {"order_coupons"}  # orders were read, not written


@responses.activate
def test_consignments_in_a_shape_the_tap_does_not_know_stop_the_sync():
    order = _order(7, 0)
    order["consignments"] = [{"shipping": []}]  # the legacy array shape
    responses.get(f"{STORE}/v2/orders", json=[order])
    with pytest.raises(ApiError, match="order 7 has consignments in a shape the tap does not know"):
        _sync({"order_line_items"})


def _refund(refund_id, created):
    return {"id": refund_id, "order_id": 1, "created": created.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
            "total_amount": 1.5, "items": [], "payments": []}


@responses.activate
def test_refunds_read_a_window_up_to_the_sync_start_and_re_read_the_lookback():
    now = datetime(2024, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
    url = f"{STORE}/v3/orders/payment_actions/refunds"
    inside = [_refund(n, now - timedelta(days=3, seconds=n)) for n in range(1, 3)]
    responses.get(url, json={"data": inside + [_refund(3, datetime(2024, 2, 19, 23, 59, 59, tzinfo=timezone.utc))], "meta": {}})
    responses.get(url, json={"data": [_refund(4, now + timedelta(seconds=1))], "meta": {}})
    state = {"bookmarks": {"refunds": {"created": "2024-02-27T00:00:00Z"}}}
    records, state = _sync({"refunds"}, state=state, page_size=3, now=now)
    # Pages are asked for four at a time (the list does not say how many it has): three past the end.
    first, *later = (_params(call) for call in responses.calls)
    assert first["created:min"] == "2024-02-19T23:59:59Z"  # the bookmark less 7 days, widened a second
    assert first["created:max"] == "2024-03-01T12:00:01Z"
    assert sorted(int(query["page"]) for query in [first] + later) == [1, 2, 3, 4, 5]
    assert [r["id"] for r in records["refunds"]] == [1, 2]  # 3 is in the widened second, 4 after the sync's start
    assert state["bookmarks"]["refunds"] == {"created": "2024-03-01T12:00:00Z"}


@responses.activate
def test_refunds_out_of_id_order_stop_the_sync():
    now = datetime(2024, 3, 1, tzinfo=timezone.utc)
    url = f"{STORE}/v3/orders/payment_actions/refunds"
    responses.get(url, json={"data": [_refund(5, now - timedelta(days=1)), _refund(4, now - timedelta(days=1))]})
    with pytest.raises(ApiError, match="not in ascending id order"):
        _sync({"refunds"}, now=now)
