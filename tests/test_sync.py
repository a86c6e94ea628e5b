"""Sync against the sandbox store: every record present at the start is emitted, once where possible."""
import json
import re
import time

import pytest
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone

from tap_harness import FAST, STREAM_NAMES, catalog_of, grouped, ids_by_stream, kill_after, run_tap, start_tap
from tap_bigcommerce.sandbox import Change

# The lossless tests run against inclusive date bounds (the filtering guide's >= and <=) and
# exclusive ones (the customers reference's "after" and "before"): the tap must lose nothing either way.
BOUNDS = pytest.mark.parametrize("bounds", [(), "all"], ids=["inclusive", "exclusive"])


def _catalog(workdir, config):
    return json.loads(run_tap(workdir, config, "--discover").stdout)


def test_full_sync_emits_every_record_once_with_schema_first(workdir, sandbox):
    store = sandbox(coupons=30, customers=120, orders=300, products=90)
    run = run_tap(workdir, store.config(**FAST))
    assert run.returncode == 0, run.stderr
    for name, ids in ids_by_stream(store).items():
        emitted = run.ids(name)
        assert sorted(emitted) == sorted(ids), name
        assert grouped(run.messages)[name][0] == "SCHEMA"
    bookmarks = run.last_state["bookmarks"]
    assert list(bookmarks["coupons"]) == ["version"]  # a finished full-table sync leaves no resume point
    for name in ("customers", "orders", "products"):
        newest = max(r["date_modified"] for r in run.records(name))
        assert bookmarks[name]["date_modified"] == newest


def test_coupons_are_bracketed_by_activate_version(workdir, sandbox):
    store = sandbox(coupons=12, customers=1, orders=1, products=1)
    first = run_tap(workdir, store.config(**FAST))
    coupon_messages = [m for m in first.messages if m.get("stream") == "coupons" and m["type"] != "SCHEMA"]
    versions = {m["version"] for m in coupon_messages if m["type"] == "RECORD"}
    assert len(versions) == 1
    activate = {"type": "ACTIVATE_VERSION", "stream": "coupons", "version": versions.pop()}
    assert coupon_messages[0] == activate and coupon_messages[-1] == activate
    # Later syncs keep the old version visible until the new one is whole: one ACTIVATE_VERSION, at the end.
    second = run_tap(workdir, store.config(**FAST), state=first.last_state)
    coupon_messages = [m for m in second.messages if m.get("stream") == "coupons" and m["type"] != "SCHEMA"]
    assert [m["type"] for m in coupon_messages] == ["RECORD"] * 12 + ["ACTIVATE_VERSION"]
    assert coupon_messages[-1]["version"] > activate["version"]


def test_orders_204_ends_paging(workdir, sandbox):
    store = sandbox(coupons=250, customers=1, orders=1, products=1)
    run = run_tap(workdir, store.config(**FAST))
    assert sorted(run.ids("coupons")) == list(range(1, 251))
    coupon_requests = [r for r in store.requests if r["path"].endswith("/v2/coupons")]
    assert [r["status"] for r in coupon_requests] == [200, 204]
    assert ("min_id", "251") in coupon_requests[-1]["params"]


def test_v3_pagination_reads_every_page(workdir, sandbox):
    store = sandbox(coupons=1, customers=700, orders=1, products=600)
    run = run_tap(workdir, store.config(max_workers=1, **FAST))
    assert sorted(run.ids("customers")) == sorted(ids_by_stream(store)["customers"])
    assert sorted(run.ids("products")) == sorted(ids_by_stream(store)["products"])
    customer_requests = [r for r in store.requests if r["path"].endswith("/v3/customers")]
    assert len(customer_requests) >= 3
    assert all(("include", "addresses,storecredit,attributes,formfields") in r["params"] for r in customer_requests)


def test_rfc2822_dates_become_rfc3339_utc_and_money_keeps_digits(workdir, sandbox):
    store = sandbox(coupons=20, customers=5, orders=40, products=5)
    run = run_tap(workdir, store.config(**FAST))
    source = {order["id"]: order for order in store.records("orders")}
    for order in run.records("orders"):
        raw = source[order["id"]]
        expected = parsedate_to_datetime(raw["date_modified"]).astimezone(timezone.utc)
        assert order["date_modified"] == expected.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert datetime.strptime(order["date_created"], "%Y-%m-%dT%H:%M:%SZ")
        assert order["date_shipped"] is None if raw["date_shipped"] == "" else order["date_shipped"].endswith("Z")
        assert order["total_inc_tax"] == raw["total_inc_tax"] and isinstance(order["total_inc_tax"], str)
        assert order["billing_address"] == raw["billing_address"]
    for coupon in run.records("coupons"):
        assert coupon["expires"] is None or coupon["expires"].endswith("Z")


def test_field_selection_emits_only_selected_and_automatic_fields(workdir, sandbox):
    store = sandbox(coupons=5, customers=5, orders=20, products=5)
    config = store.config(**FAST)
    catalog = _catalog(workdir, config)
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = entry["stream"] == "orders"
            elif item["breadcrumb"] != ["properties", "total_inc_tax"]:
                item["metadata"]["selected"] = False
    run = run_tap(workdir, config, catalog=catalog)
    assert run.returncode == 0, run.stderr
    assert {m["stream"] for m in run.messages if m["type"] in ("RECORD", "SCHEMA")} == {"orders"}
    schema = next(m for m in run.messages if m["type"] == "SCHEMA")["schema"]
    # _sdc_deleted_at is automatic too: a record carries it only when it reports a deletion.
    assert set(schema["properties"]) == {"id", "date_modified", "total_inc_tax", "_sdc_deleted_at"}
    assert all(set(record) == {"id", "date_modified", "total_inc_tax"} for record in run.records("orders"))
    assert len(run.records("orders")) == 20


@BOUNDS
def test_record_edited_mid_sync_is_not_lost(workdir, sandbox, bounds):
    # Edit the first records after page one was read: page-number paging would now skip the
    # first records of page two (the sandbox's own test shows it does). Also edit records that
    # have not been read yet, which move past the end of the scan.
    store = sandbox(exclusive_bounds=bounds, coupons=1, customers=600, orders=800, products=600)
    present = ids_by_stream(store)
    later = sorted(present["orders"])[-5:]
    store.schedule(Change(after_request=1, stream="orders", edit=40, edit_ids=None))
    store.schedule(Change(after_request=2, stream="orders", edit=0, edit_ids=later))
    store.schedule(Change(after_request=3, stream="customers", edit=40))
    store.schedule(Change(after_request=4, stream="products", edit=40))
    run = run_tap(workdir, store.config(max_workers=1, **FAST))
    assert run.returncode == 0, run.stderr
    for name in ("orders", "customers", "products"):
        assert present[name] <= set(run.ids(name)), name


@BOUNDS
def test_records_created_and_deleted_mid_sync(workdir, sandbox, bounds):
    store = sandbox(exclusive_bounds=bounds, coupons=600, customers=1, orders=800, products=1)
    present = ids_by_stream(store)
    store.schedule(Change(after_request=2, stream="orders", delete=30, create=10))
    store.schedule(Change(after_request=3, stream="coupons", delete=20, create=5))
    run = run_tap(workdir, store.config(max_workers=1, **FAST))
    assert run.returncode == 0, run.stderr
    for name in ("orders", "coupons"):
        still_there = present[name] & ids_by_stream(store)[name]
        assert still_there <= set(run.ids(name)), name


@BOUNDS
def test_700_records_sharing_one_date_modified_are_all_emitted(workdir, sandbox, bounds):
    store = sandbox(exclusive_bounds=bounds, coupons=1, customers=300, orders=300, products=300,
                    same_second={"orders": 700, "customers": 700, "products": 700})
    run = run_tap(workdir, store.config(max_workers=2, **FAST))
    assert run.returncode == 0, run.stderr
    for name in ("orders", "customers", "products"):
        ids = run.ids(name)
        assert sorted(ids) == sorted(ids_by_stream(store)[name]), name
        assert len(ids) == len(set(ids)), f"{name} emitted duplicates"


@BOUNDS
def test_second_run_from_final_state_emits_only_records_at_or_after_the_bookmark(workdir, sandbox, bounds):
    store = sandbox(exclusive_bounds=bounds, coupons=3, customers=200, orders=300, products=200)
    first = run_tap(workdir, store.config(**FAST))
    state = first.last_state
    store.edit("orders", count=3)
    store.create("customers", 2)
    second = run_tap(workdir, store.config(**FAST), state=state)
    assert second.returncode == 0, second.stderr
    for name in ("customers", "orders", "products"):
        bookmark = state["bookmarks"][name]["date_modified"]
        assert all(record["date_modified"] >= bookmark for record in second.records(name)), name
        assert len(second.records(name)) < 10
    assert len(second.records("orders")) >= 3
    assert len(second.records("customers")) >= 2


@BOUNDS
def test_killed_sync_resumes_from_last_state_without_loss(workdir, sandbox, bounds):
    store = sandbox(exclusive_bounds=bounds, coupons=900, customers=900, orders=3000, products=900, latency_ms=30)
    present = ids_by_stream(store)
    config = store.config(max_workers=4, page_size=50, **FAST)
    catalog = catalog_of(workdir, config)
    kept, states = kill_after(start_tap(workdir, config, catalog=catalog), 30)
    assert states == 30, "the sync finished before the kill"
    last_state = [m["value"] for m in kept if m["type"] == "STATE"][-1]
    assert any(name in last_state["bookmarks"] for name in STREAM_NAMES)
    resumed = run_tap(workdir, config, state=last_state, catalog=catalog)
    assert resumed.returncode == 0, resumed.stderr
    for name in STREAM_NAMES:
        before = {m["record"]["id"] for m in kept if m["type"] == "RECORD" and m["stream"] == name}
        assert present[name] <= before | set(resumed.ids(name)), name
    coupon_versions = {m["version"] for m in kept + resumed.messages if m["type"] == "RECORD" and m["stream"] == "coupons"}
    if "coupons" in last_state["bookmarks"]:
        assert len(coupon_versions) == 1  # the resumed full-table sync keeps the version it started


def test_concurrent_sync_under_small_quota_gets_no_429(workdir, sandbox):
    store = sandbox(coupons=300, customers=1500, orders=3000, products=1500, quota=12, window_ms=600)
    config = store.config(max_workers=6, page_size=25, **FAST)
    run = run_tap(workdir, config, catalog=catalog_of(workdir, config))
    assert run.returncode == 0, run.stderr
    assert re.search(r"orders: reading the rest in [2-6] parallel partitions", run.stderr)
    assert [r for r in store.requests if r["status"] == 429] == []
    for name, ids in ids_by_stream(store).items():
        assert sorted(set(run.ids(name))) == sorted(ids), name


def test_last_pages_put_aside_under_a_small_quota_are_all_read_once(workdir, sandbox):
    # Under a quota a range whose next page is its last puts that page aside until all that is
    # left fits in one window; every record must still come out once, with no 429, and the
    # bookmark must still reach the newest record.
    # (Windows of a second: with 400 ms windows the pacer's 20 ms margin for a request that reaches
    # the store late was once too little when the whole suite loaded this 2-core machine: one 429.)
    store = sandbox(coupons=50, customers=600, orders=1500, products=600, latency_ms=10, quota=75, window_ms=1000)
    config = store.config(max_workers=8, page_size=20, **FAST)
    run = run_tap(workdir, config, catalog=catalog_of(workdir, config))
    assert run.returncode == 0, run.stderr
    assert "last pages put aside" in run.stderr
    assert [r for r in store.requests if r["status"] == 429] == []
    for name, ids in ids_by_stream(store).items():
        assert sorted(run.ids(name)) == sorted(ids), name
    for name in ("customers", "orders", "products"):
        newest = max(r["date_modified"] for r in run.records(name))
        assert run.last_state["bookmarks"][name]["date_modified"] == newest, name


@BOUNDS
def test_many_splits_emit_every_record_exactly_once(workdir, sandbox, bounds):
    # Small pages and a little latency keep sixteen workers busy, so ranges are split again and
    # again while their pages are in flight: no record may come out twice, or not at all, and
    # the bookmark must reach the newest record even when an early range finishes last.
    store = sandbox(exclusive_bounds=bounds, coupons=100, customers=1200, orders=3000, products=1200, latency_ms=15, quota=10**6)
    config = store.config(max_workers=16, page_size=20, **FAST)
    run = run_tap(workdir, config, catalog=catalog_of(workdir, config))
    assert run.returncode == 0, run.stderr
    for name, ids in ids_by_stream(store).items():
        assert sorted(run.ids(name)) == sorted(ids), name
    for name in ("customers", "orders", "products"):
        newest = max(r["date_modified"] for r in run.records(name))
        assert run.last_state["bookmarks"][name]["date_modified"] == newest, name


def test_pages_read_ahead_wait_for_a_target_that_takes_nothing(workdir, sandbox):
    # Refunds are read several pages at once. While the target takes nothing (the pipe is full
    # and the tap's writes block), those pages too must stop coming, or they fill the memory.
    store = sandbox(coupons=1, customers=1, orders=20000, products=1)
    config = store.config(**FAST, page_size=20)
    pages = len(store.refunds()) // 20 + 1
    process = start_tap(workdir, config, catalog=catalog_of(workdir, config, ["refunds"]))
    try:
        time.sleep(3)  # the tap fills the pipe in a fraction of that
        asked = sum(1 for request in store.requests if request["path"].endswith("/refunds"))
    finally:
        out, _ = process.communicate(timeout=120)
    assert process.returncode == 0
    assert out.count('"type":"RECORD"') == len(store.refunds())
    assert asked < pages // 4, f"{asked} of {pages} pages fetched while nothing was written"
