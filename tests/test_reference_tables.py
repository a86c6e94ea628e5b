"""The store's other tables against the sandbox: by id keyset (brands, gift certificates), by page
number (customer groups, channels, currencies, promotions, addresses), in one answer (order
statuses, category trees, the store) and by date window without a sort (subscribers, customer
attributes and values, price lists): every record once, whatever changes while they are read."""

import pytest

from tap_harness import FAST, catalog_of, kill_after, run_tap, start_tap
from tap_bigcommerce.sandbox import Change
from tap_bigcommerce.streams import STREAMS_BY_NAME

TABLES = ("brands", "customer_groups", "channels", "gift_certificates", "currencies", "order_statuses", "promotions",
          "promotion_codes", "category_trees", "customer_addresses", "product_variants", "categories")
SMALL = dict(coupons=1, customers=1, orders=1, products=1)


def _sync(workdir, store, streams=TABLES, state=None, **settings):
    config = store.config(**FAST, **settings)
    return run_tap(workdir, config, catalog=catalog_of(workdir, config, streams), state=state)


def _truth(store, stream):
    return {STREAMS_BY_NAME[stream].identity(record): record for record in store.records(stream)}


def _dates(store, stream):
    """The store's records of a stream now: their key and date_modified."""
    return {key: record["date_modified"] for key, record in _truth(store, stream).items()}


def _ids(run, stream):
    """The keys of the records a run wrote for a stream, in order (a tuple where the key is several fields)."""
    return [STREAMS_BY_NAME[stream].identity(record) for record in run.records(stream)]


def test_each_table_arrives_whole_once_and_is_activated(workdir, sandbox):
    store = sandbox(**dict(SMALL, customers=40, products=20), brands=130, customer_groups=12, channels=12, gift_certificates=23,
                    currencies=4, promotions=17, promotion_codes=40, category_trees=3, categories=33)
    run = _sync(workdir, store, page_size=5)
    assert run.returncode == 0, run.stderr
    for stream in TABLES:
        ids = _ids(run, stream)
        assert sorted(ids) == sorted(_truth(store, stream)) and len(ids) == len(set(ids)), stream
        kinds = [m["type"] for m in run.messages if m.get("stream") == stream]
        assert kinds[-1] == "ACTIVATE_VERSION" and "version" in run.last_state["bookmarks"][stream]
    truth = _truth(store, "customer_groups")
    assert all(r["name"] == truth[r["id"]]["name"] and r["date_modified"].endswith("Z")
               for r in run.records("customer_groups"))
    statuses = {r["status"] for r in run.records("channels")}
    assert {"archived", "deleted"} & statuses, "archived and deleted channels are asked for (status:in)"
    # Brands by id keyset: one request per page. Page-numbered tables of more than one page are
    # read twice, and the second read agreed.
    paths = [r["path"] for r in store.requests]
    assert sum(p.endswith("/catalog/brands") for p in paths) == 130 // 5
    assert sum(p.endswith("/customer_groups") for p in paths) == 2 * 3
    assert sum(p.endswith("/gift_certificates") for p in paths) == 23 // 5 + 1  # min_id keyset, a short last page
    assert sum(p.endswith("/order_statuses") for p in paths) == 1  # the whole list in one answer
    assert sum(p.endswith("/catalog/trees") for p in paths) == 1
    assert sum(p.endswith("/promotions") for p in paths) == 2 * 4  # 17 at 5 a page, read twice
    # Codes: a cursor read under each coupon promotion (the odd ids), once however often it is listed.
    code_paths = [p for p in paths if p.endswith("/codes")]
    assert {p.split("/")[-2] for p in code_paths} == {str(n) for n in range(1, 18, 2)}
    assert len(code_paths) == sum(-(-n // 5) or 1 for n in _codes_per_promotion(store).values())
    assert all(r["promotion_id"] % 2 == 1 for r in run.records("promotion_codes"))
    assert len(run.ids("customer_addresses")) > 40  # more than one per customer on average
    assert sorted(run.ids("order_statuses")) == list(range(15))
    trees = {record["tree_id"] for record in run.records("categories")}
    assert len(trees) > 1 and all(isinstance(key, tuple) for key in _ids(run, "categories"))
    schema = next(m for m in run.messages if m["type"] == "SCHEMA" and m["stream"] == "categories")
    assert schema["key_properties"] == ["tree_id", "category_id"]
    gift = {r["id"]: r for r in run.records("gift_certificates")}
    assert all(gift[g["id"]]["balance"] == g["balance"] for g in store.records("gift_certificates"))

def _codes_per_promotion(store):
    """How many codes each coupon promotion has now."""
    counts = {promotion["id"]: 0 for promotion in store.records("promotions")
              if promotion["redemption_type"] == "COUPON"}
    for code in store.records("promotion_codes"):
        counts[code["promotion_id"]] += 1
    return counts


def test_deletes_creates_and_edits_mid_read_lose_nothing_that_stayed(workdir, sandbox):
    changes = [Change(after_request=n, stream=stream, delete=1, create=1, edit=1)
               for n, stream in ((2, "customer_groups"), (3, "channels"), (4, "brands"), (5, "gift_certificates"),
                                 (6, "customer_groups"), (7, "currencies"), (8, "promotions"), (10, "category_trees"),
                                 (12, "categories"), (13, "promotion_codes"), (14, "promotion_codes"))]
    store = sandbox(**dict(SMALL, customers=30, products=30), brands=60, customer_groups=30, channels=25, gift_certificates=40,
                    currencies=12, promotions=30, promotion_codes=50, category_trees=4, categories=35, changes=changes)
    owners = sorted({address["customer_id"] for address in store.records("customer_addresses")})
    store.schedule(Change(after_request=9, stream="customers", delete_ids=owners[:3], create=2))
    store.schedule(Change(after_request=11, stream="products", delete_ids=[1, 2], create=1))
    before = {stream: set(_truth(store, stream)) for stream in TABLES}
    run = _sync(workdir, store, page_size=5, max_workers=1)
    assert run.returncode == 0, run.stderr
    for stream in TABLES:
        ids = _ids(run, stream)
        stayed = before[stream] & set(_truth(store, stream))
        assert stayed <= set(ids) and len(ids) == len(set(ids)), stream
        assert len(stayed) < len(before[stream]) or stream == "order_statuses", f"{stream}: the test deleted nothing"


def test_a_delete_that_moves_a_record_onto_a_page_already_read_is_caught_by_the_second_read(workdir, sandbox):
    # Group 1 goes once page 1 is read: group 6 moves up to page 1, and the first read misses it.
    store = sandbox(**SMALL, customer_groups=30, changes=[Change(after_request=1, stream="customer_groups",
                                                                 delete_ids=[1])])
    run = _sync(workdir, store, ["customer_groups"], page_size=5)
    assert run.returncode == 0, run.stderr
    assert sorted(run.ids("customer_groups")) == list(range(1, 31))  # group 1 was read before it went
    assert sum(r["path"].endswith("/customer_groups") for r in store.requests) == 3 * 6  # the first two reads differ


def test_a_table_that_never_stops_changing_stops_the_sync_with_one_sentence(workdir, sandbox):
    changes = [Change(after_request=n, stream="customer_groups", delete=1, create=1) for n in range(1, 40)]
    store = sandbox(**SMALL, customer_groups=30, changes=changes)
    run = _sync(workdir, store, ["customer_groups"], page_size=5)
    assert run.returncode != 0
    assert "customer_groups: the table changed during each of 5 reads by page number" in run.stderr
    assert "Traceback" not in run.stderr


def _killed_and_resumed(workdir, store, streams, states):
    """Kill a sync of the streams at its `states`-th STATE and run it again from there: what a
    target committed of the first, and the second run."""
    config = store.config(page_size=10, max_workers=2, **FAST)
    catalog = catalog_of(workdir, config, streams)
    kept, seen = kill_after(start_tap(workdir, config, catalog=catalog), states)
    assert seen == states, "the sync finished before the kill"
    state = [m["value"] for m in kept if m["type"] == "STATE"][-1]
    resumed = run_tap(workdir, config, catalog=catalog, state=state)
    assert resumed.returncode == 0, resumed.stderr
    return kept, resumed


def test_a_killed_sync_of_the_tables_resumes_without_loss(workdir, sandbox):
    store = sandbox(**SMALL, brands=400, customer_groups=40, channels=30, gift_certificates=200, latency_ms=5)
    kept, resumed = _killed_and_resumed(workdir, store, TABLES, 12)
    for stream in TABLES:
        before = {STREAMS_BY_NAME[stream].identity(m["record"]) for m in kept
                  if m["type"] == "RECORD" and m["stream"] == stream}
        assert set(_truth(store, stream)) <= before | set(_ids(resumed, stream)), stream


def test_the_store_is_one_record_each_sync(workdir, sandbox):
    store = sandbox(**SMALL)
    first = _sync(workdir, store, ["store"])
    assert first.returncode == 0, first.stderr
    assert first.records("store") == store.records("store") and first.ids("store") == ["sandbox"]
    # A table of one row: the first sync activates its version at once and again when read.
    assert [m["type"] for m in first.messages if m["type"] != "STATE"] == \
        ["SCHEMA", "ACTIVATE_VERSION", "RECORD", "ACTIVATE_VERSION"]
    second = _sync(workdir, store, ["store"], state=first.last_state)
    assert second.returncode == 0 and len(second.records("store")) == 1
    assert [r["params"] for r in store.requests if r["path"].endswith("/v2/store")] == [[], []]


def test_channels_without_its_scope_name_the_scope(workdir, sandbox):
    store = sandbox(**SMALL, tokens={"narrow": ["store_v2_products_read_only", "store_v2_customers_read_only"]})
    config = dict(store.config(**FAST), access_token="narrow")
    run = run_tap(workdir, config, catalog=catalog_of(workdir, config, ["brands", "channels"]))
    assert run.returncode != 0 and "channels" in run.stderr and "Channel settings" in run.stderr


WINDOWS = ("subscribers", "customer_attributes", "customer_attribute_values", "price_lists", "price_list_records",
           "product_metafields", "order_metafields", "customer_metafields")
BOUNDS = pytest.mark.parametrize("bounds", [(), "all"], ids=["inclusive", "exclusive"])


@BOUNDS
def test_date_windows_read_whole_then_only_what_changed(workdir, sandbox, bounds):
    store = sandbox(**SMALL, exclusive_bounds=bounds, subscribers=47, customer_attributes=6,
                    customer_attribute_values=33, price_lists=12, price_list_records=40, product_metafields=23,
                    order_metafields=11, customer_metafields=5)
    first = _sync(workdir, store, WINDOWS, page_size=5)
    assert first.returncode == 0, first.stderr
    for stream in WINDOWS:
        ids = _ids(first, stream)
        assert sorted(ids) == sorted(_truth(store, stream)) and len(ids) == len(set(ids)), stream
    read = {stream: _dates(store, stream) for stream in WINDOWS}
    for stream in WINDOWS:
        store.edit(stream, count=2)
        store.create(stream, 2)
    second = _sync(workdir, store, WINDOWS, state=first.last_state, page_size=5)
    assert second.returncode == 0, second.stderr
    for stream in WINDOWS:
        changed = {key for key, moment in _dates(store, stream).items() if read[stream].get(key) != moment}
        assert len(changed) == 4 and set(_ids(second, stream)) == changed, stream  # the changes alone
        identity = STREAMS_BY_NAME[stream].identity
        latest = {identity(r): r["date_modified"] for r in first.records(stream) + second.records(stream)}
        assert latest == _dates(store, stream), stream


def test_a_delete_inside_a_date_window_is_caught_by_the_second_read(workdir, sandbox):
    store = sandbox(**SMALL, subscribers=30, changes=[Change(after_request=1, stream="subscribers", delete_ids=[1])])
    run = _sync(workdir, store, ["subscribers"], page_size=5)
    assert run.returncode == 0, run.stderr
    assert sorted(run.ids("subscribers")) == list(range(1, 31))  # subscriber 1 was read before it went


def test_a_delete_inside_a_cursor_window_loses_nothing_in_one_read(workdir, sandbox):
    store = sandbox(**SMALL, order_metafields=30,
                    changes=[Change(after_request=1, stream="order_metafields", delete_ids=[1, 2])])
    run = _sync(workdir, store, ["order_metafields"], page_size=5)
    assert run.returncode == 0, run.stderr
    assert sorted(run.ids("order_metafields")) == list(range(1, 31))  # 1 and 2 were read before they went
    # A keyset: one read (six pages, then an empty one, since a full page is never taken as the last).
    assert sum(r["path"].endswith("/orders/metafields") for r in store.requests) == 7


WINDOW_COUNTS = dict(subscribers=40, customer_attributes=12, customer_attribute_values=30, price_lists=15,
                     price_list_records=45, product_metafields=25, order_metafields=20, customer_metafields=15)


def test_date_windows_lose_nothing_to_edits_deletes_and_bulk_seconds_mid_read(workdir, sandbox):
    # Each window stream has 23 records sharing one second, and loses one record, gains one and
    # has two edited while the first sync reads it.
    changes = [Change(after_request=n, stream=stream, delete=1, create=1, edit=2)
               for n, stream in enumerate(WINDOWS, start=2)]
    store = sandbox(**SMALL, **WINDOW_COUNTS, same_second={stream: 23 for stream in WINDOWS}, changes=changes)
    before = {stream: _dates(store, stream) for stream in WINDOWS}
    first = _sync(workdir, store, WINDOWS, page_size=5, max_workers=1)
    assert first.returncode == 0, first.stderr
    second = _sync(workdir, store, WINDOWS, state=first.last_state, page_size=5, max_workers=1)
    assert second.returncode == 0, second.stderr
    for stream in WINDOWS:
        truth = _truth(store, stream)
        ids = _ids(first, stream)
        assert len(ids) == len(set(ids)), stream
        # (A price list's deletion takes its records with it.)
        gone = len(set(before[stream]) - set(truth))
        assert gone == 1 or stream == "price_list_records" and gone > 1, f"{stream}: the test deleted nothing"
        # What was there from start to end and never edited arrives in the first sync.
        untouched = {rid for rid, record in truth.items() if before[stream].get(rid) == record["date_modified"]}
        assert len(untouched) == len(before[stream]) - gone - 2 and untouched <= set(ids), stream
        # Every record's latest version arrives by the end of the second sync.
        identity = STREAMS_BY_NAME[stream].identity
        latest = {identity(r): r["date_modified"] for r in first.records(stream) + second.records(stream)}
        assert all(latest.get(key) == record["date_modified"] for key, record in truth.items()), stream
        assert len(set(truth) - set(before[stream])) == 1, f"{stream}: the test created nothing"


def test_a_killed_sync_of_the_date_windows_resumes_without_loss(workdir, sandbox):
    store = sandbox(**SMALL, **{stream: 4 * count for stream, count in WINDOW_COUNTS.items()}, latency_ms=5)
    kept, resumed = _killed_and_resumed(workdir, store, WINDOWS, 10)
    unfinished = 0
    for stream in WINDOWS:
        before = {STREAMS_BY_NAME[stream].identity(m["record"]) for m in kept
                  if m["type"] == "RECORD" and m["stream"] == stream}
        unfinished += set(_truth(store, stream)) != before
        assert set(_truth(store, stream)) <= before | set(_ids(resumed, stream)), stream
    assert unfinished, "the kill left no window unread"


def test_a_promotion_deleted_before_its_codes_are_read_costs_only_its_codes(workdir, sandbox):
    # Promotion 3 goes right after the page that lists it: its codes list answers 404.
    store = sandbox(**SMALL, promotions=8, promotion_codes=30,
                    changes=[Change(after_request=1, stream="promotions", delete_ids=[3])])
    owners = {}
    for code in store.records("promotion_codes"):
        owners.setdefault(code["promotion_id"], set()).add(code["id"])
    assert owners.get(3), "promotion 3 has no codes to lose"
    run = _sync(workdir, store, ["promotions", "promotion_codes"], page_size=5)
    assert run.returncode == 0, run.stderr
    assert 3 in run.ids("promotions")  # read before it went
    assert set(run.ids("promotion_codes")) == set().union(*owners.values()) - owners[3]
    assert [r["status"] for r in store.requests if r["path"].endswith("/promotions/3/codes")] == [404]
    assert "promotions/3/codes answered 404" in run.stderr
