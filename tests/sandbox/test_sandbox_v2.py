"""v2 endpoints (orders, coupons, order sub-resources, count, time) answer like BigCommerce's."""
import datetime as dt
import email.utils
import re

import pytest

RFC2822 = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000$")
MONEY = re.compile(r"^-?\d+\.\d{4}$")


def parse(value):
    """An RFC 2822 date as an aware datetime."""
    return email.utils.parsedate_to_datetime(value)


def all_orders(client, **params):
    """Every order page by page with limit 250."""
    out, page = [], 1
    while True:
        resp = client.get("v2/orders", dict(params, page=page, limit=250))
        if resp.status_code == 204:
            return out
        out.extend(resp.json())
        page += 1


def test_orders_are_a_bare_array_with_rfc2822_dates_and_money_strings(store):
    sandbox, client = store
    resp = client.get("v2/orders")
    assert resp.status_code == 200
    orders = resp.json()
    assert isinstance(orders, list) and len(orders) == 50
    assert [o["id"] for o in orders] == list(range(1, 51))
    for order in orders:
        assert RFC2822.match(order["date_created"]) and RFC2822.match(order["date_modified"])
        assert order["date_shipped"] == "" or RFC2822.match(order["date_shipped"])
        assert parse(order["date_modified"]) >= parse(order["date_created"])
        for key in ("subtotal_ex_tax", "total_inc_tax", "total_tax", "discount_amount", "refunded_amount"):
            assert MONEY.match(order[key]), (key, order[key])
        assert set(order["billing_address"]) >= {"first_name", "street_1", "country_iso2", "email", "form_fields"}
        for sub in ("products", "coupons"):
            assert order[sub]["resource"] == f"/orders/{order['id']}/{sub}"
            assert order[sub]["url"] == f"{sandbox.base_url}/stores/sandbox/v2/orders/{order['id']}/{sub}"
        assert order["shipping_addresses"]["resource"] == f"/orders/{order['id']}/shippingaddresses"
    assert any(o["date_shipped"] == "" for o in orders) and any(o["date_shipped"] for o in orders)


def test_v2_page_past_the_end_is_204_with_empty_body(store):
    _, client = store
    resp = client.get("v2/orders", {"page": 3, "limit": 250})
    assert resp.status_code == 204 and resp.content == b""
    resp = client.get("v2/coupons", {"page": 2, "limit": 250})
    assert resp.status_code == 204 and resp.content == b""
    resp = client.get("v2/orders", {"min_id": 10**6})
    assert resp.status_code == 204


def test_orders_paging_covers_every_record_once(store):
    sandbox, client = store
    ids = [o["id"] for o in all_orders(client)]
    assert ids == [o["id"] for o in sandbox.records("orders")] == list(range(1, 401))


@pytest.mark.parametrize("limit, status", [(251, 413), (0, 400), ("ten", 400), (-1, 400)])
def test_v2_bad_limit(store, limit, status):
    _, client = store
    resp = client.get("v2/orders", {"limit": limit})
    assert resp.status_code == status
    body = resp.json()
    assert isinstance(body, list) and body[0]["status"] == status and body[0]["message"]


def test_v2_limit_250_is_allowed(store):
    _, client = store
    assert len(client.get("v2/orders", {"limit": 250}).json()) == 250


def test_v2_unknown_parameter_is_400_naming_it(store):
    _, client = store
    resp = client.get("v2/orders", {"is_deleted": "true"})
    assert resp.status_code == 400 and "is_deleted" in resp.json()[0]["message"]
    assert client.get("v2/coupons", {"sort": "id"}).status_code == 400


@pytest.mark.parametrize("field, key", [
    ("id", lambda o: o["id"]),
    ("date_created", lambda o: parse(o["date_created"])),
    ("date_modified", lambda o: parse(o["date_modified"])),
    ("customer_id", lambda o: o["customer_id"]),
    ("status_id", lambda o: o["status_id"]),
])
@pytest.mark.parametrize("direction", ["", ":asc", ":desc"])
def test_orders_sort_breaks_ties_by_id_ascending(store, field, key, direction):
    sandbox, client = store
    orders = all_orders(client, sort=field + direction)
    desc = direction == ":desc"
    expected = sorted(sandbox.records("orders"), key=lambda o: o["id"])
    expected.sort(key=key, reverse=desc)  # stable sort keeps id ascending inside ties
    assert [o["id"] for o in orders] == [o["id"] for o in expected]


def test_orders_bad_sort_is_400(store):
    _, client = store
    assert client.get("v2/orders", {"sort": "total:asc"}).status_code == 400
    assert client.get("v2/orders", {"sort": "id:up"}).status_code == 400


def test_orders_id_filters_are_inclusive(store):
    _, client = store
    orders = all_orders(client, min_id=10, max_id=20)
    assert [o["id"] for o in orders] == list(range(10, 21))


@pytest.mark.parametrize("fmt", ["rfc2822", "iso_offset", "iso_z", "iso_naive", "iso_fraction"])
@pytest.mark.parametrize("field", ["modified", "created"])
def test_orders_date_filters_are_inclusive_in_every_format(store, fmt, field):
    sandbox, client = store
    records = sandbox.records("orders")
    stamps = sorted(parse(o[f"date_{field}"]) for o in records)
    lo, hi = stamps[100], stamps[300]

    def render(value):
        return {"rfc2822": email.utils.format_datetime(value),
                "iso_offset": value.isoformat(),
                "iso_z": value.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "iso_naive": value.strftime("%Y-%m-%dT%H:%M:%S"),
                "iso_fraction": value.strftime("%Y-%m-%dT%H:%M:%S.000+00:00")}[fmt]

    got = all_orders(client, **{f"min_date_{field}": render(lo), f"max_date_{field}": render(hi)})
    expected = [o["id"] for o in records if lo <= parse(o[f"date_{field}"]) <= hi]
    assert [o["id"] for o in got] == expected and len(expected) >= 201


def test_orders_filter_with_other_offset_is_converted_to_utc(store):
    sandbox, client = store
    records = sandbox.records("orders")
    pivot = sorted(parse(o["date_modified"]) for o in records)[200]
    local = pivot.astimezone(dt.timezone(dt.timedelta(hours=-4)))
    got = all_orders(client, min_date_modified=local.isoformat())
    assert len(got) == sum(1 for o in records if parse(o["date_modified"]) >= pivot)


def test_orders_unparsable_date_is_400(store):
    _, client = store
    resp = client.get("v2/orders", {"min_date_modified": "yesterday"})
    assert resp.status_code == 400 and "min_date_modified" in resp.json()[0]["message"]
    # An unencoded "+" arrives as a space: the store rejects it rather than guessing.
    resp = client.get("v2/orders?min_date_modified=2024-01-01T00:00:00+00:00")
    assert resp.status_code == 400


def test_orders_count_honours_filters(store):
    sandbox, client = store
    assert client.get("v2/orders/count").json() == {"count": 400}
    assert client.get("v2/orders/count", {"min_id": 391}).json() == {"count": 10}
    records = sandbox.records("orders")
    pivot = sorted(parse(o["date_modified"]) for o in records)[150]
    count = client.get("v2/orders/count", {"max_date_modified": pivot.isoformat()}).json()["count"]
    assert count == sum(1 for o in records if parse(o["date_modified"]) <= pivot)


def test_coupons_have_no_date_modified_and_v2_shapes(store):
    _, client = store
    coupons = client.get("v2/coupons", {"limit": 250}).json()
    assert [c["id"] for c in coupons] == list(range(1, 41))
    for coupon in coupons:
        assert "date_modified" not in coupon
        assert RFC2822.match(coupon["date_created"])
        assert coupon["expires"] == "" or RFC2822.match(coupon["expires"])
        assert MONEY.match(coupon["amount"]) and MONEY.match(coupon["min_purchase"])
        assert set(coupon["applies_to"]) == {"entity", "ids"}
        assert isinstance(coupon["restricted_to"], (dict, list))
        assert coupon["shipping_methods"] is None or isinstance(coupon["shipping_methods"], list)
    assert {c["expires"] == "" for c in coupons} == {True, False}


def test_coupon_filters(store):
    _, client = store
    coupons = client.get("v2/coupons", {"limit": 250}).json()
    assert [c["id"] for c in client.get("v2/coupons", {"min_id": 5, "max_id": 7}).json()] == [5, 6, 7]
    assert [c["id"] for c in client.get("v2/coupons", {"id": 9}).json()] == [9]
    code = coupons[11]["code"]
    assert [c["id"] for c in client.get("v2/coupons", {"code": code}).json()] == [12]
    assert client.get("v2/coupons", {"code": "NOPE"}).status_code == 204
    assert client.get("v2/coupons/count", {"min_id": 31}).json() == {"count": 10}
    page2 = client.get("v2/coupons", {"page": 2, "limit": 15}).json()
    assert [c["id"] for c in page2] == list(range(16, 31))


def test_order_sub_resources(store):
    sandbox, client = store
    order = sandbox.records("orders")[0]
    lines = client.get("v2/orders/1/products").json()
    assert lines and all(line["order_id"] == 1 and MONEY.match(line["base_price"]) for line in lines)
    assert sum(line["quantity"] for line in lines) == order["items_total"]
    for spelling in ("shipping_addresses", "shippingaddresses"):
        addresses = client.get(f"v2/orders/1/{spelling}").json()
        assert addresses[0]["order_id"] == 1 and "shipping_method" in addresses[0]
    statuses = {client.get(f"v2/orders/{n}/coupons").status_code for n in range(1, 30)}
    assert statuses == {200, 204}
    assert client.get("v2/orders/99999/products").status_code == 404
    # The link in the order body leads to the sub-resource.
    assert client.session.get(order["products"]["url"], headers={"X-Auth-Token": "sandbox-token"}).json() == lines


def test_order_consignments_and_fees_endpoints_match_what_the_list_embeds(store):
    sandbox, client = store
    for order in sandbox.records("orders", sandbox.order_tokens(["consignments.line_items", "fees"], "object"))[:20]:
        whole = client.get(f"v2/orders/{order['id']}/consignments", {"include": "consignments.line_items"}).json()
        assert whole == order["consignments"]
        linked = client.get(f"v2/orders/{order['id']}/consignments").json()
        assert all(set(line) == {"url", "resource"} for c in linked["shipping"] for line in c["line_items"])
        assert client.get(f"v2/orders/{order['id']}/fees").json() == {"fees": order["fees"]}
    legacy = sandbox.records("orders")[0]
    assert legacy["consignments"]["resource"] == f"/orders/{legacy['id']}/consignments"
    assert client.get("v2/orders/99999/fees").status_code == 404


def test_time_endpoint(store):
    _, client = store
    import time
    assert abs(client.get("v2/time").json()["time"] - time.time()) < 5
