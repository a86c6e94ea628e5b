"""v3 endpoints (customers, products) answer with the data/meta envelope, cursors and filters."""
import base64
import datetime as dt
import json
import re
import time

import pytest


def iso(value):
    """A v3 date string as an aware datetime."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def every_page(client, path, **params):
    """All data of a page-number listing, following meta.pagination."""
    out, page = [], 1
    while True:
        body = client.get(path, dict(params, page=page, limit=params.pop("limit", 50))).json()
        out.extend(body["data"])
        pag = body["meta"]["pagination"]
        if pag["current_page"] >= pag["total_pages"]:
            return out
        page += 1


def test_customers_envelope_and_pagination_meta(store):
    _, client = store
    body = client.get("v3/customers", {"limit": 40, "page": 2}).json()
    assert [c["id"] for c in body["data"]] == list(range(41, 81))
    assert body["meta"]["pagination"] == {
        "total": 150, "count": 40, "per_page": 40, "current_page": 2, "total_pages": 4,
        "links": {"previous": "?page=1&limit=40", "current": "?page=2&limit=40", "next": "?page=3&limit=40"}}
    assert "cursor_pagination" not in body["meta"]
    customer = body["data"][0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", customer["date_modified"])
    assert iso(customer["date_modified"]) >= iso(customer["date_created"])
    for extra in ("addresses", "attributes", "form_fields", "store_credit_amounts"):
        assert extra not in customer
    last = client.get("v3/customers", {"limit": 40, "page": 4}).json()["meta"]["pagination"]
    assert last["count"] == 30 and "next" not in last["links"]


def test_v3_past_the_end_is_200_with_empty_data(store):
    _, client = store
    for path in ("v3/customers", "v3/catalog/products"):
        resp = client.get(path, {"page": 99})
        assert resp.status_code == 200 and resp.json()["data"] == []
        assert resp.json()["meta"]["pagination"]["count"] == 0


def test_customers_include_adds_the_arrays(store):
    _, client = store
    data = client.get("v3/customers", {"include": "addresses,attributes,formfields,storecredit"}).json()["data"]
    for customer in data:
        assert len(customer["addresses"]) == customer["address_count"]
        assert len(customer["attributes"]) == customer["attribute_count"]
        assert isinstance(customer["form_fields"], list) and isinstance(customer["store_credit_amounts"], list)
    assert any(c["addresses"] for c in data)
    assert client.get("v3/customers", {"include": "consent"}).status_code == 422


def test_customers_cursor_paging_walks_every_id_once(store):
    sandbox, client = store
    first = client.get("v3/customers", {"limit": 25}).json()
    assert "pagination" in first["meta"] and "cursor_pagination" in first["meta"]
    seen = [c["id"] for c in first["data"]]
    cursor = first["meta"]["cursor_pagination"]["end_cursor"]
    assert json.loads(base64.b64decode(cursor)) == {"id": 25}
    while True:
        body = client.get("v3/customers", {"limit": 25, "after": cursor, "page": 3}).json()
        assert set(body["meta"]) == {"cursor_pagination"}
        seen.extend(c["id"] for c in body["data"])
        meta = body["meta"]["cursor_pagination"]
        if "next" not in meta["links"]:
            break
        cursor = meta["end_cursor"]
    assert seen == [c["id"] for c in sandbox.records("customers")]


def test_customers_cursor_honours_date_filters_and_before(store):
    sandbox, client = store
    records = sandbox.records("customers")
    pivot = sorted(iso(c["date_modified"]) for c in records)[75]
    after = base64.b64encode(b'{"id":10}').decode().rstrip("=")
    body = client.get("v3/customers", {"after": after, "limit": 250,
                                       "date_modified:min": pivot.strftime("%Y-%m-%dT%H:%M:%SZ")}).json()
    assert [c["id"] for c in body["data"]] == [
        c["id"] for c in records if c["id"] > 10 and iso(c["date_modified"]) >= pivot]
    before = base64.b64encode(b'{"id":31}').decode()
    body = client.get("v3/customers", {"before": before, "limit": 5}).json()
    assert [c["id"] for c in body["data"]] == [26, 27, 28, 29, 30]


@pytest.mark.parametrize("params", [
    {"after": "bm90LWpzb24", "limit": 5},
    {"after": "eyJpZCI6MX0=", "sort": "date_modified:asc"},
    {"after": "eyJpZCI6MX0=", "before": "eyJpZCI6OX0="},
])
def test_customers_bad_cursor_use_is_422(store, params):
    _, client = store
    resp = client.get("v3/customers", params)
    assert resp.status_code == 422
    assert set(resp.json()) >= {"status", "title", "type", "errors"}


@pytest.mark.parametrize("sort, key, desc", [
    ("date_created:asc", "date_created", False), ("date_created:desc", "date_created", True),
    ("date_modified:asc", "date_modified", False), ("date_modified:desc", "date_modified", True),
    ("last_name:asc", "last_name", False), ("last_name:desc", "last_name", True),
])
def test_customers_sort(store, sort, key, desc):
    sandbox, client = store
    got = every_page(client, "v3/customers", sort=sort, limit=250)
    expected = sorted(sandbox.records("customers"), key=lambda c: c[key], reverse=desc)
    assert [c["id"] for c in got] == [c["id"] for c in expected]


def test_customers_bad_sort_is_422(store):
    _, client = store
    assert client.get("v3/customers", {"sort": "email:asc"}).status_code == 422
    assert client.get("v3/customers", {"sort": "date_modified"}).status_code == 422


@pytest.mark.parametrize("render", [
    lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ"),
    lambda d: d.strftime("%Y-%m-%dT%H:%M:%S"),
    lambda d: d.isoformat(),
    lambda d: str(int(d.timestamp())),
])
@pytest.mark.parametrize("field", ["date_modified", "date_created"])
def test_customers_date_filters_inclusive_in_every_format(store, render, field):
    sandbox, client = store
    records = sandbox.records("customers")
    stamps = sorted(iso(c[field]) for c in records)
    lo, hi = stamps[30], stamps[120]
    got = every_page(client, "v3/customers", limit=250, **{f"{field}:min": render(lo), f"{field}:max": render(hi)})
    assert [c["id"] for c in got] == [c["id"] for c in records if lo <= iso(c[field]) <= hi]


def test_customers_date_only_means_midnight_utc(store):
    sandbox, client = store
    records = sandbox.records("customers")
    day = sorted(iso(c["date_modified"]) for c in records)[75].date()
    midnight = dt.datetime.combine(day, dt.time(), dt.timezone.utc)
    got = every_page(client, "v3/customers", limit=250, **{"date_modified:min": day.isoformat()})
    assert len(got) == sum(1 for c in records if iso(c["date_modified"]) >= midnight)


def test_customers_id_in_and_bad_values(store):
    _, client = store
    assert [c["id"] for c in client.get("v3/customers", {"id:in": "3,1,7"}).json()["data"]] == [1, 3, 7]
    assert client.get("v3/customers", {"id:in": "a,b"}).status_code == 422
    resp = client.get("v3/customers", {"date_modified:min": "last tuesday"})
    assert resp.status_code == 422 and "date_modified:min" in resp.json()["title"]
    resp = client.get("v3/customers", {"email:in": "x@example.com"})
    assert resp.status_code == 422 and "email:in" in resp.json()["title"]
    assert client.get("v3/customers", {"limit": 251}).status_code == 413
    assert client.get("v3/customers", {"limit": 0}).status_code == 422


def test_percent_encoded_colons_are_decoded(store):
    _, client = store
    resp = client.session.get(client.url("v3/customers") + "?date_modified%3Amin=2020-01-01T00%3A00%3A00Z",
                              headers={"X-Auth-Token": "sandbox-token"})
    assert resp.status_code == 200 and resp.json()["meta"]["pagination"]["total"] == 150


def test_products_envelope_dates_and_numbers(store):
    _, client = store
    body = client.get("v3/catalog/products", {"limit": 10}).json()
    product = body["data"][0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", product["date_modified"])
    assert isinstance(product["price"], float) and isinstance(product["inventory_level"], int)
    assert "variants" not in product and "images" not in product
    assert body["meta"]["pagination"]["total"] == 120 and "cursor_pagination" not in body["meta"]


def test_products_include(store):
    _, client = store
    include = "variants,images,custom_fields,bulk_pricing_rules,primary_image,videos"
    data = client.get("v3/catalog/products", {"include": include}).json()["data"]
    for product in data:
        assert product["variants"] and all(v["product_id"] == product["id"] for v in product["variants"])
        for key in ("images", "custom_fields", "bulk_pricing_rules", "videos"):
            assert isinstance(product[key], list)
        assert product["primary_image"] == (product["images"][0] if product["images"] else None)
    assert client.get("v3/catalog/products", {"include": "warehouses"}).status_code == 422


def test_products_options_or_modifiers_cap_the_page_at_10(store):
    _, client = store
    body = client.get("v3/catalog/products", {"include": "options", "limit": 250}).json()
    assert len(body["data"]) == 10 and body["meta"]["pagination"]["per_page"] == 10


def test_products_id_keyset_filters(store):
    _, client = store
    ids = lambda params: [p["id"] for p in every_page(client, "v3/catalog/products", limit=250, **params)]
    assert ids({"id:greater": 100}) == list(range(101, 121))
    assert ids({"id:min": 100, "id:max": 105}) == list(range(100, 106))
    assert ids({"id:in": "5,50,500"}) == [5, 50]
    assert ids({"id:greater": 100, "sort": "id", "direction": "desc"}) == list(range(120, 100, -1))


@pytest.mark.parametrize("sort", ["id", "name", "sku", "price", "date_modified", "inventory_level",
                                  "is_visible", "total_sold", "calculated_price"])
@pytest.mark.parametrize("direction", [None, "asc", "desc"])
def test_products_sort_and_direction(store, sort, direction):
    sandbox, client = store
    params = {"sort": sort, "limit": 250}
    if direction:
        params["direction"] = direction
    got = every_page(client, "v3/catalog/products", **params)
    expected = sorted(sandbox.records("products"), key=lambda p: p[sort], reverse=direction == "desc")
    assert [p["id"] for p in got] == [p["id"] for p in expected]


def test_products_bad_sort_or_direction_is_422(store):
    _, client = store
    assert client.get("v3/catalog/products", {"sort": "date_modified:asc"}).status_code == 422
    assert client.get("v3/catalog/products", {"sort": "id", "direction": "up"}).status_code == 422


def test_products_date_filters(store):
    sandbox, client = store
    records = sandbox.records("products")
    stamps = sorted(iso(p["date_modified"]) for p in records)
    lo, hi = stamps[20], stamps[90]
    got = every_page(client, "v3/catalog/products", limit=250, sort="date_modified", direction="asc",
                     **{"date_modified:min": lo.isoformat(), "date_modified:max": hi.strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert [p["id"] for p in got] == [p["id"] for p in sorted(records, key=lambda p: (p["date_modified"], p["id"]))
                                      if lo <= iso(p["date_modified"]) <= hi]
    by_epoch = client.get("v3/catalog/products", {"date_modified:min": int(lo.timestamp()), "limit": 250}).json()
    assert by_epoch["meta"]["pagination"]["total"] == sum(1 for p in records if iso(p["date_modified"]) >= lo)


def test_products_date_only_gets_the_current_time_added(make_store):
    sandbox, client = make_store(products=30)
    sandbox.create("products", 1)
    time.sleep(1.1)
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    # Read as midnight, the date would match the product created a second ago; read as "now", it does not.
    assert client.get("v3/catalog/products", {"date_modified:min": today}).json()["data"] == []
    total = client.get("v3/catalog/products", {"date_modified:max": today}).json()["meta"]["pagination"]["total"]
    assert total == 31


def test_v3_unknown_parameter_is_422(store):
    _, client = store
    resp = client.get("v3/catalog/products", {"keyword": "jar"})
    assert resp.status_code == 422 and "keyword" in resp.json()["title"]
