"""Deletions as data (detect_deletions): the ids the store no longer has come back as records with
_sdc_deleted_at, found with about one request per stream when nothing was deleted."""
import math
import random

import pytest

from tap_harness import FAST, catalog_of, kill_after, run_tap, start_tap
from tap_bigcommerce.deletions import IdSet

COUNTED = ("orders", "products")  # an id range and a count
PROBED = ("customers", "subscribers")  # a count, then id:in probes
SWEPT = ("customer_attributes", "order_metafields")  # a count, then the ids read whole (pages; a cursor)
TABLES = ("coupons", "brands", "gift_certificates", "customer_groups")  # read whole: compared with the last read
STREAMS = COUNTED + PROBED + SWEPT + TABLES
SIZES = dict(orders=3000, products=1200, customers=1600, coupons=300, brands=120, subscribers=400,
             gift_certificates=90, customer_groups=30, customer_attributes=600, order_metafields=700)


def _sync(workdir, store, state=None, streams=STREAMS, **settings):
    config = store.config(detect_deletions=True, **FAST, **settings)
    return run_tap(workdir, config, catalog=catalog_of(workdir, config, streams), state=state)


def _deleted(run, stream):
    return sorted(r["id"] for r in run.records(stream) if r.get("_sdc_deleted_at"))


def _delete_some(store, count, seed=5):
    rng = random.Random(seed)
    gone = {}
    for stream in STREAMS:
        ids = [record["id"] for record in store.records(stream)]
        gone[stream] = sorted(rng.sample(ids, count))
        store.delete(stream, ids=gone[stream])
    return gone


def _detection_requests(store, since):
    """Requests a run spent beyond reading: counts, and listings or probes by id."""
    found = {}
    for entry in store.requests[since:]:
        params = dict(entry["params"])
        if entry["path"].endswith("/count") or params.get("limit") == "1" or "id:in" in params \
                or "max_id" in params or "id:max" in params:
            stream = next(name for name, tail in (("orders", "/v2/orders"), ("products", "/catalog/products"),
                                                  ("subscribers", "/subscribers"), ("customer_attributes", "/attributes"),
                                                  ("order_metafields", "/orders/metafields"),
                                                  ("customers", "/v3/customers")) if tail in entry["path"])
            found[stream] = found.get(stream, 0) + 1
    return found


def test_ten_deletions_come_back_exactly_and_cheaply(workdir, sandbox):
    store = sandbox(**SIZES)
    first = _sync(workdir, store)
    assert first.returncode == 0, first.stderr
    assert all(not _deleted(first, stream) for stream in STREAMS)
    # Nothing deleted: one request per stream read incrementally, none for the full tables.
    before = len(store.requests)
    quiet = _sync(workdir, store, state=first.last_state)
    assert quiet.returncode == 0, quiet.stderr
    assert all(not _deleted(quiet, stream) for stream in STREAMS)
    assert _detection_requests(store, before) == {stream: 1 for stream in COUNTED + PROBED + SWEPT}
    gone = _delete_some(store, 10)
    before = len(store.requests)
    second = _sync(workdir, store, state=quiet.last_state)
    assert second.returncode == 0, second.stderr
    for stream in STREAMS:
        assert _deleted(second, stream) == gone[stream], stream
        marked = [r for r in second.records(stream) if r.get("_sdc_deleted_at")]
        assert all(set(r) == {"id", "_sdc_deleted_at"} and r["_sdc_deleted_at"].endswith("Z") for r in marked)
    spent = _detection_requests(store, before)
    for stream in COUNTED:  # counts bisected down to a page: a small multiple of 10 * log2(N / 250)
        bound = 10 * math.log2(SIZES[stream] / 250)
        assert spent[stream] <= 3 * bound, (stream, spent[stream], bound)
    # The set forgot them: the next run reports nothing again.
    third = _sync(workdir, store, state=second.last_state)
    assert all(not _deleted(third, stream) for stream in STREAMS)


def test_a_sync_killed_while_it_reports_deletions_resumes_without_a_false_one(workdir, sandbox):
    store = sandbox(**SIZES)
    first = _sync(workdir, store)
    gone = _delete_some(store, 6)
    config = store.config(detect_deletions=True, **FAST)
    catalog = catalog_of(workdir, config, STREAMS)
    # Killed at the first deletion record of an incrementally read stream, before its STATE.
    kept, _ = kill_after(start_tap(workdir, config, catalog=catalog, state=first.last_state),
                         at=lambda m: m["type"] == "RECORD" and m["stream"] in COUNTED + PROBED + SWEPT
                         and "_sdc_deleted_at" in m["record"])
    state = [m["value"] for m in kept if m["type"] == "STATE"][-1]
    resumed = run_tap(workdir, config, catalog=catalog, state=state)
    assert resumed.returncode == 0, resumed.stderr
    for stream in STREAMS:
        reported = {m["record"]["id"] for m in kept if m["type"] == "RECORD" and m["stream"] == stream
                    and "_sdc_deleted_at" in m["record"]} | set(_deleted(resumed, stream))
        assert reported == set(gone[stream]), stream


def test_records_deleted_while_the_sync_reads_end_up_deleted_in_the_warehouse(workdir, sandbox):
    from tap_bigcommerce.sandbox import Change

    changes = [Change(after_request=n, stream=stream, delete=3, create=2, edit=2)
               for n, stream in enumerate(STREAMS, start=2)]
    store = sandbox(**SIZES, changes=changes)
    runs = [_sync(workdir, store, page_size=100)]
    runs.append(_sync(workdir, store, state=runs[0].last_state, page_size=100))
    for stream in STREAMS:
        warehouse = {}  # what a target with hard_delete keeps
        for run in runs:
            for record in run.records(stream):
                if record.get("_sdc_deleted_at"):
                    warehouse.pop(record["id"], None)
                else:
                    warehouse[record["id"]] = record
        assert set(warehouse) == {record["id"] for record in store.records(stream)}, stream


def test_archived_orders_are_marked_deleted(workdir, sandbox):
    store = sandbox(orders=300, products=1, customers=1, coupons=1)
    first = _sync(workdir, store, streams=["orders"])
    store.archive([5, 17])
    second = _sync(workdir, store, state=first.last_state, streams=["orders"])
    archived = {r["id"]: r for r in second.records("orders") if r.get("_sdc_deleted_at")}
    assert sorted(archived) == [5, 17]
    assert all(r["is_deleted"] is True and r["_sdc_deleted_at"] == r["date_modified"] for r in archived.values())


def test_off_by_default_and_the_column_is_declared(workdir, sandbox):
    store = sandbox(orders=50, products=20, customers=20, coupons=20)
    config = store.config(**FAST)
    catalog = catalog_of(workdir, config, ["orders", "coupons"])
    first = run_tap(workdir, config, catalog=catalog)
    store.delete("coupons", ids=[1, 2])
    second = run_tap(workdir, config, catalog=catalog, state=first.last_state)
    assert "deletions" not in second.last_state and not _deleted(second, "coupons")
    schemas = {m["stream"]: m["schema"] for m in second.messages if m["type"] == "SCHEMA"}
    assert schemas["orders"]["properties"]["_sdc_deleted_at"]["format"] == "date-time"


@pytest.mark.parametrize("value", [{"orders": {"delivered": [[5, 3]]}}, {"orders": {"delivered": [[1, 4], [5, 9]]}},
                                   {"orders": {"delivered": "1-9"}}, ["orders"]])
def test_a_bad_deletions_entry_in_the_state_is_one_sentence(workdir, sandbox, value):
    store = sandbox(orders=5, products=1, customers=1, coupons=1)
    run = _sync(workdir, store, state={"bookmarks": {}, "deletions": value}, streams=["orders"])
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert len(run.error_lines) == 1 and "deletions" in run.error_lines[0]


def test_the_id_set_keeps_ranges():
    ids = IdSet()
    for rid in (5, 7, 6, 1, 3, 2, 10):
        ids.add(rid)
    assert ids.to_state() == [[1, 3], [5, 7], [10, 10]] and len(ids) == 7
    ids.remove(6)
    ids.remove(10)
    assert ids.to_state() == [[1, 3], [5, 5], [7, 7]] and 5 in ids and 6 not in ids
    assert ids.count(2, 7) == 4 and ids.nth(2, 2) == 5 and list(ids.ids(3, 7)) == [3, 5, 7]
    ids.add(6)  # an id that comes back rejoins its neighbours
    assert ids.to_state() == [[1, 3], [5, 7]]
    # A million ids with a gap every 300 or so (deleted records): a few thousand ranges.
    rng = random.Random(1)
    big = IdSet([[1, 1_000_000]])
    for rid in rng.sample(range(2, 1_000_000), 3_000):
        big.remove(rid)
    assert len(big) == 997_000 and len(big.to_state()) <= 3_001


def test_a_full_table_killed_mid_read_resumes_without_a_false_deletion(workdir, sandbox):
    store = sandbox(coupons=900, brands=700, orders=1, products=1, customers=1, latency_ms=2)
    config = store.config(detect_deletions=True, page_size=50, max_workers=1, **FAST)
    catalog = catalog_of(workdir, config, ["coupons", "brands"])
    first = run_tap(workdir, config, catalog=catalog)
    store.delete("coupons", ids=[7, 450, 899])
    store.delete("brands", ids=[3, 699])
    # Killed half-way through the second read of both tables: what it had listed is in the state.
    kept, states = kill_after(start_tap(workdir, config, catalog=catalog, state=first.last_state), 20)
    assert states == 20
    state = [m["value"] for m in kept if m["type"] == "STATE"][-1]
    assert any("reading" in entry for entry in state["deletions"].values())
    resumed = run_tap(workdir, config, catalog=catalog, state=state)
    assert resumed.returncode == 0, resumed.stderr
    reported = {stream: {m["record"]["id"] for m in kept + resumed.messages if m["type"] == "RECORD"
                         and m["stream"] == stream and "_sdc_deleted_at" in m["record"]} for stream in ("coupons", "brands")}
    assert reported == {"coupons": {7, 450, 899}, "brands": {3, 699}}


def test_large_id_sets_thin_the_states_and_a_kill_still_loses_nothing(workdir, sandbox):
    # A first sync delivers 20,000 customers in date_modified order: the id set splits into
    # thousands of ranges, so STATEs come every few pages rather than after each one.
    store = sandbox(customers=20_000, orders=1, products=1, coupons=1, latency_ms=1)
    config = store.config(detect_deletions=True, page_size=100, max_workers=2, **FAST)
    catalog = catalog_of(workdir, config, ["customers"])
    kept, _ = kill_after(start_tap(workdir, config, catalog=catalog), 70)
    state = [m["value"] for m in kept if m["type"] == "STATE"][-1]
    pages = len([m for m in kept if m["type"] == "RECORD"]) / 100
    assert pages > 1.5 * 70, f"STATEs came after every page ({pages:.0f} pages, 70 STATEs)"
    resumed = run_tap(workdir, config, catalog=catalog, state=state)
    assert resumed.returncode == 0, resumed.stderr
    delivered = {m["record"]["id"] for m in kept if m["type"] == "RECORD"} | set(resumed.ids("customers"))
    assert delivered == {customer["id"] for customer in store.records("customers")}
    # What the killed run delivered before its last STATE is in the set: its deletion is found.
    early = sorted({m["record"]["id"] for m in kept if m["type"] == "RECORD"} - set(resumed.ids("customers")))[:5]
    store.delete("customers", ids=early)
    third = _sync(workdir, store, state=resumed.last_state, streams=["customers"])
    assert _deleted(third, "customers") == early


def test_a_catalog_that_selects_fields_one_by_one_still_carries_the_deletion_column(workdir, sandbox):
    # A catalog written before the column existed, with every field selected one by one.
    store = sandbox(coupons=30, orders=1, products=1, customers=1)
    config = store.config(detect_deletions=True, **FAST)
    catalog = catalog_of(workdir, config, ["coupons"])
    entry = catalog["streams"][[e["stream"] for e in catalog["streams"]].index("coupons")]
    del entry["schema"]["properties"]["_sdc_deleted_at"]
    entry["metadata"] = [m for m in entry["metadata"] if m["breadcrumb"] != ["properties", "_sdc_deleted_at"]]
    for item in entry["metadata"]:
        if item["breadcrumb"]:
            item["metadata"]["selected"] = True
    first = run_tap(workdir, config, catalog=catalog)
    store.delete("coupons", ids=[4])
    second = run_tap(workdir, config, catalog=catalog, state=first.last_state)
    schema = next(m["schema"] for m in second.messages if m["type"] == "SCHEMA" and m["stream"] == "coupons")
    assert "_sdc_deleted_at" in schema["properties"] and _deleted(second, "coupons") == [4]


def test_turned_on_for_a_store_already_synced_it_starts_from_what_the_store_holds(workdir, sandbox):
    store = sandbox(orders=800, customers=500, products=1, coupons=1)
    config = store.config(**FAST)
    catalog = catalog_of(workdir, config, ["orders", "customers"])
    before = run_tap(workdir, config, catalog=catalog)  # without detect_deletions
    # The setting turned on: this run delivers little, and lists each store's ids once.
    store.edit("orders", count=3)
    started = _sync(workdir, store, state=before.last_state, streams=["orders", "customers"])
    assert started.returncode == 0 and "to start the set of delivered ids" in started.stderr
    assert len(started.records("orders")) < 10
    # Records delivered only before the setting was on are covered now.
    old = {"orders": [11, 400, 799], "customers": [2, 250]}
    for stream, ids in old.items():
        store.delete(stream, ids=ids)
    after = _sync(workdir, store, state=started.last_state, streams=["orders", "customers"])
    assert {stream: _deleted(after, stream) for stream in old} == old


def test_a_run_killed_before_its_baseline_leaves_it_to_the_next(workdir, sandbox):
    store = sandbox(orders=3000, products=1, customers=1, coupons=1, latency_ms=2)
    config = store.config(page_size=50, **FAST)
    catalog = catalog_of(workdir, config, ["orders"])
    before = run_tap(workdir, config, catalog=catalog)
    store.edit("orders", count=400)
    config = dict(config, detect_deletions=True)
    kept, _ = kill_after(start_tap(workdir, config, catalog=catalog, state=before.last_state), 3)
    state = [m["value"] for m in kept if m["type"] == "STATE"][-1]
    assert state["deletions"]["orders"]["baseline"] == "pending"
    resumed = run_tap(workdir, config, catalog=catalog, state=state)
    assert "to start the set of delivered ids" in resumed.stderr
    store.delete("orders", ids=[5, 2999])
    after = _sync(workdir, store, state=resumed.last_state, streams=["orders"], page_size=50)
    assert _deleted(after, "orders") == [5, 2999]
