"""Faults, mid-sync changes, same-second clusters, determinism and the request log."""
import email.utils
import json
import time

import pytest
import requests

from tap_bigcommerce.sandbox import Change, Sandbox, SandboxOptions


def statuses(client, count, path="v2/coupons"):
    """The outcome of `count` requests: a status, or the name of the connection error."""
    out = []
    for _ in range(count):
        try:
            resp = client.get(path, {"limit": 5})
            resp.json() if resp.status_code == 200 else None
            out.append(resp.status_code)
        except requests.ConnectionError:
            out.append("drop")
        except requests.exceptions.ChunkedEncodingError:
            out.append("truncate")
        except ValueError:
            out.append("truncate")
    return out


def test_faults_at_forces_each_fault_kind(make_store):
    sandbox, client = make_store(faults_at={1: "503", 2: "truncate", 3: "drop", 4: "429", 5: "429-bare", 6: "500"})
    resp = client.get("v3/customers")
    assert resp.status_code == 503 and resp.json()["status"] == 503 and "X-Rate-Limit-Requests-Left" in resp.headers
    resp = client.get("v2/orders")
    assert resp.status_code == 200 and int(resp.headers["Content-Length"]) == len(resp.content)
    with pytest.raises(ValueError):
        resp.json()
    with pytest.raises(requests.ConnectionError):
        client.get("v2/orders")
    resp = client.get("v2/orders")
    assert resp.status_code == 429 and "X-Retry-After" in resp.headers
    resp = client.get("v2/orders")
    assert resp.status_code == 429 and "X-Rate-Limit-Requests-Left" not in resp.headers
    resp = client.get("v2/orders")
    assert resp.status_code == 500 and resp.json()[0]["status"] == 500
    assert client.get("v2/orders").status_code == 200
    got = [(entry["status"], entry["fault"]) for entry in sandbox.requests]
    assert got == [(503, "503"), (200, "truncate"), (None, "drop"), (429, "429"), (429, "429-bare"),
                   (500, "500"), (200, None)]


def test_injected_429s_do_not_consume_quota(make_store):
    _, client = make_store(quota=10, faults_at={1: "429", 2: "429-bare"})
    client.get("v2/orders")
    client.get("v2/orders")
    assert client.get("v2/orders").headers["X-Rate-Limit-Requests-Left"] == "9"


def test_random_faults_are_deterministic_for_a_seed(make_store):
    options = dict(error_rate=0.2, drop_rate=0.1, truncate_rate=0.1, fault_seed=42, quota=1000)
    runs = []
    for _ in range(2):
        _, client = make_store(**options)
        runs.append(statuses(client, 40))
    assert runs[0] == runs[1]
    kinds = set(runs[0])
    assert {"drop", "truncate", 200} <= kinds and kinds & {500, 502, 503, 504}
    _, client = make_store(**dict(options, fault_seed=43))
    assert statuses(client, 40) != runs[0]


def test_non_data_requests_get_no_faults(make_store):
    sandbox, client = make_store(faults_at={1: "503"})
    assert client.get("v2/time").status_code == 200
    assert client.get("v2/orders/count").status_code == 200
    assert client.get("v2/orders").status_code == 503


def test_latency_applies_to_every_request(make_store):
    _, client = make_store(latency_ms=150)
    started = time.perf_counter()
    client.get("v2/time")
    client.get("v2/orders", token="bad")
    assert time.perf_counter() - started >= 0.3


def test_change_is_applied_right_after_the_nth_data_request(make_store):
    sandbox, client = make_store(orders=30, changes=[Change(after_request=2, stream="orders", edit=3, create=2, delete=1)])
    oldest = sorted(sandbox.records("orders"), key=lambda o: (email.utils.parsedate_to_datetime(o["date_modified"]), o["id"]))
    first = client.get("v2/orders", {"limit": 250}).json()
    assert len(first) == 30
    client.get("v2/time")  # not a data request
    assert len(sandbox.records("orders")) == 30
    second = client.get("v2/orders", {"limit": 250}).json()
    assert second == first
    after = {o["id"]: o for o in sandbox.records("orders")}
    assert len(after) == 31 and oldest[0]["id"] not in after and {31, 32} <= set(after)
    edited = [o["id"] for o in oldest[1:4]]
    now = time.time()
    for rid in edited:
        assert abs(email.utils.parsedate_to_datetime(after[rid]["date_modified"]).timestamp() - now) < 5
        assert after[rid]["staff_notes"] == "Edited 1 time(s)"
    third = {o["id"] for o in client.get("v2/orders", {"limit": 250}).json()}
    assert third == set(after)


def test_edit_ids_and_runtime_schedule(make_store):
    sandbox, client = make_store(customers=20)
    sandbox.schedule(Change(after_request=1, stream="customers", edit_ids=[5, 6]))
    client.get("v3/customers")
    newest = client.get("v3/customers", {"sort": "date_modified:desc", "limit": 2}).json()["data"]
    assert sorted(c["id"] for c in newest) == [5, 6]


def test_naive_page_paging_over_date_modified_skips_records_edited_mid_sync(make_store):
    # Page 1 is read; then the records on it are edited, move to the end, and every later record
    # shifts three places up: page 2 starts three records too late. A tap must not page like this.
    sandbox, client = make_store(orders=100, changes=[Change(after_request=1, stream="orders", edit=3)])
    before = {o["id"] for o in sandbox.records("orders")}
    seen, page = [], 1
    while True:
        resp = client.get("v2/orders", {"sort": "date_modified:asc", "limit": 10, "page": page})
        if resp.status_code == 204:
            break
        seen.extend(o["id"] for o in resp.json())
        page += 1
    skipped = before - set(seen)
    assert len(skipped) == 3
    assert len(seen) == 100 and len(set(seen)) == 97  # the three edited ones come twice


def test_same_second_cluster_sits_among_other_records(make_store):
    sandbox, client = make_store(orders=200, same_second={"orders": 700})
    records = sandbox.records("orders")
    assert len(records) == 900
    stamps = [email.utils.parsedate_to_datetime(o["date_modified"]) for o in records]
    shared = max(set(stamps), key=stamps.count)
    assert stamps.count(shared) >= 700
    assert any(s < shared for s in stamps) and any(s > shared for s in stamps)
    value = shared.isoformat()
    resp = client.get("v2/orders/count", {"min_date_modified": value, "max_date_modified": value})
    assert resp.json()["count"] == stamps.count(shared)


def test_same_seed_same_store(make_store):
    first, _ = make_store(seed=5)
    second, _ = make_store(seed=5)
    other, _ = make_store(seed=6)
    for stream in ("coupons", "customers", "products"):
        assert first.records(stream) == second.records(stream)
        assert first.records(stream) != other.records(stream)
    strip = lambda orders: [{k: v for k, v in o.items() if not isinstance(v, dict) or "url" not in v} for o in orders]
    assert strip(first.records("orders")) == strip(second.records("orders"))


def test_records_dates_are_within_range_and_ids_ascend(make_store):
    sandbox, _ = make_store()
    data_end = sandbox.options.data_end
    orders = sandbox.records("orders")
    assert [o["id"] for o in orders] == list(range(1, 401))
    for order in orders:
        created = email.utils.parsedate_to_datetime(order["date_created"])
        modified = email.utils.parsedate_to_datetime(order["date_modified"])
        assert created <= modified <= data_end


def test_big_store_is_fast_to_build_and_to_page():
    started = time.perf_counter()
    sandbox = Sandbox(SandboxOptions(orders=100_000, customers=0, products=0, coupons=0, quota=10_000))
    assert time.perf_counter() - started < 10
    with sandbox:
        store = sandbox.store.streams["orders"]
        pivot = store.mod_index[50_000][0]
        session = requests.Session()
        url = f"{sandbox.base_url}/stores/sandbox/v2/orders"
        params = {"sort": "date_modified:asc", "min_date_modified": pivot.isoformat(), "limit": 250, "page": 3}
        resp = session.get(url, params=params, headers={"X-Auth-Token": "sandbox-token"})
        assert resp.status_code == 200 and len(resp.json()) == 250
        assert sandbox.requests[-1]["duration_ms"] < 1000


def test_request_log_and_json_lines_file(make_store, tmp_path):
    log = tmp_path / "requests.jsonl"
    sandbox, client = make_store(log_path=str(log))
    client.get("v3/customers", {"date_modified:min": "2024-01-01T00:00:00+00:00", "limit": 5})
    entry = sandbox.requests[-1]
    assert entry["method"] == "GET" and entry["path"] == "/stores/sandbox/v3/customers"
    assert "date_modified%3Amin=2024-01-01T00%3A00%3A00%2B00%3A00" in entry["query"]
    assert ("date_modified:min", "2024-01-01T00:00:00+00:00") in entry["params"]
    assert entry["status"] == 200 and entry["fault"] is None and entry["duration_ms"] >= 0
    assert abs(entry["time"] - time.time()) < 5
    sandbox.stop()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["path"] == entry["path"]


def test_config_points_the_tap_at_the_sandbox(make_store):
    sandbox, _ = make_store(store_hash="abc123", token="tok")
    assert sandbox.config() == {"client_id": "sandbox-client", "access_token": "tok", "store_hash": "abc123",
                                "start_date": "2020-01-01T00:00:00Z", "base_url": sandbox.base_url}
    assert sandbox.config(start_date="2024-01-01T00:00:00Z", page_size=10)["page_size"] == 10


def test_html_no_meta_null_date_and_redirect_faults(make_store):
    sandbox, client = make_store(faults_at={1: "html", 2: "no-meta", 3: "null-date", 4: "redirect", 5: "null-date"},
                                 redirect_to="http://elsewhere.test:8080")
    resp = client.get("v2/orders")
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    assert resp.text.startswith("<!DOCTYPE html>")
    body = client.get("v3/catalog/products", {"limit": 5}).json()
    assert "meta" not in body and len(body["data"]) == 5
    assert client.get("v2/orders", {"limit": 5}).json()[0]["date_modified"] is None
    resp = client.get("v2/orders", {"limit": 5}, allow_redirects=False)
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("http://elsewhere.test:8080/stores/sandbox/v2/orders?")
    assert "limit=5" in resp.headers["Location"]
    assert client.get("v3/customers", {"limit": 5}).json()["data"][0]["date_modified"] is None
    assert [entry["fault"] for entry in sandbox.requests] == ["html", "no-meta", "null-date", "redirect", "null-date"]


def test_a_stalled_request_is_dropped_when_the_sandbox_stops(make_store):
    sandbox, client = make_store(faults_at={1: "stall"})
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        client.session.get(client.url("v2/orders"), headers={"X-Auth-Token": "sandbox-token"}, timeout=0.5)
    sandbox.stop()  # returns promptly although the request is still held
    assert time.monotonic() - started < 5
    assert sandbox.requests[0]["fault"] == "stall"


@pytest.mark.parametrize("path, low, high, stream", [
    ("v2/orders", "min_date_modified", "max_date_modified", "orders"),
    ("v3/customers", "date_modified:min", "date_modified:max", "customers"),
    ("v3/catalog/products", "date_modified:min", "date_modified:max", "products"),
])
def test_exclusive_bounds_leave_out_the_records_at_the_bound(make_store, path, low, high, stream):
    inclusive, inclusive_client = make_store()
    exclusive, exclusive_client = make_store(exclusive_bounds=(stream,))
    record = inclusive.records(stream)[3]
    moment = record["date_modified"]
    if "," in moment:  # v2: RFC 2822
        moment = email.utils.parsedate_to_datetime(moment).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    for bounds in ({low: moment}, {high: moment}, {low: moment, high: moment}):
        params = dict(bounds, limit=250)
        found = {name: _ids(c.get(path, params)) for name, c in (("inclusive", inclusive_client),
                                                                ("exclusive", exclusive_client))}
        assert record["id"] in found["inclusive"] and record["id"] not in found["exclusive"], bounds


def _ids(resp):
    """The ids in a v2 (bare array, 204 when empty) or v3 (envelope) answer."""
    if resp.status_code == 204:
        return set()
    body = resp.json()
    return {record["id"] for record in (body["data"] if isinstance(body, dict) else body)}
