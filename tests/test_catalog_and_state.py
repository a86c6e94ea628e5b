"""Catalogs and states as users hand them over: older catalogs, edited schemas, Meltano's
overrides and wrappers, a STATE line cut from a log."""
import json

import jsonschema

from tap_harness import FAST, ids_by_stream, run_tap


def _catalog(workdir, config):
    return json.loads(run_tap(workdir, config, "--discover").stdout)


def _only(catalog, name):
    """The catalog with only `name` selected."""
    for entry in catalog["streams"]:
        entry["metadata"][0]["metadata"]["selected"] = entry["stream"] == name
    return catalog


def test_a_selected_stream_whose_fields_say_nothing_gets_every_field(workdir, sandbox):
    # What tap-bigcommerce 1.1.3's catalogs and many older ones look like: the stream is selected,
    # its fields carry inclusion but no selected / selected-by-default.
    store = sandbox(coupons=1, customers=1, orders=15, products=1)
    config = store.config(**FAST)
    catalog = _only(_catalog(workdir, config), "orders")
    for entry in catalog["streams"]:
        for item in entry["metadata"][1:]:
            item["metadata"].pop("selected-by-default")
    run = run_tap(workdir, config, catalog=catalog)
    assert run.returncode == 0, run.stderr
    everything = run_tap(workdir, config)  # no catalog: every stream and field
    assert [m for m in run.messages if m.get("stream") == "orders" and m["type"] == "SCHEMA"] == \
        [m for m in everything.messages if m.get("stream") == "orders" and m["type"] == "SCHEMA"]
    assert len(run.records("orders")) == 15 and run.records("orders") == everything.records("orders")
    assert "orders: the stream is selected and none of its fields says whether it is, so every field is synced" in run.stderr


def test_records_match_the_schema_sent_whatever_types_the_catalog_claims(workdir, sandbox):
    store = sandbox(coupons=1, customers=1, orders=40, products=1)
    config = store.config(**FAST)
    catalog = _only(_catalog(workdir, config), "orders")
    orders_entry = next(entry for entry in catalog["streams"] if entry["stream"] == "orders")
    properties = orders_entry["schema"]["properties"]
    for name in ("total_inc_tax", "subtotal_ex_tax", "billing_address"):
        properties[name] = {"type": ["null", "number"]}  # money is text in the API and in the tap
    properties["no_such_field"] = {"type": "string"}
    run = run_tap(workdir, config, catalog=catalog)
    assert run.returncode == 0, run.stderr
    schema = next(m["schema"] for m in run.messages if m["type"] == "SCHEMA")
    assert "string" in schema["properties"]["total_inc_tax"]["type"]
    assert "no_such_field" not in schema["properties"]
    assert "orders: the catalog lists fields this tap does not have, left out: no_such_field" in run.stderr
    validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())
    for record in run.records("orders"):
        validator.validate(record)


def test_deselecting_a_nested_field_says_it_is_kept(workdir, sandbox):
    store = sandbox(coupons=1, customers=1, orders=5, products=1)
    config = store.config(**FAST)
    catalog = _only(_catalog(workdir, config), "orders")
    orders_entry = next(entry for entry in catalog["streams"] if entry["stream"] == "orders")
    orders_entry["metadata"].append({"breadcrumb": ["properties", "billing_address", "properties", "email"],
                                     "metadata": {"selected": False}})
    run = run_tap(workdir, config, catalog=catalog)
    assert run.returncode == 0, run.stderr
    assert "orders: only top-level fields can be deselected; kept whole: billing_address.email" in run.stderr
    assert all("email" in order["billing_address"] for order in run.records("orders"))


def test_replication_method_full_table_reads_an_incremental_stream_whole_every_time(workdir, sandbox):
    store = sandbox(coupons=1, customers=1, orders=120, products=1)
    config = store.config(**FAST)
    catalog = _only(_catalog(workdir, config), "orders")
    orders_entry = next(entry for entry in catalog["streams"] if entry["stream"] == "orders")
    orders_entry["metadata"][0]["metadata"]["replication-method"] = "FULL_TABLE"
    earlier = {"bookmarks": {"orders": {"date_modified": "2099-01-01T00:00:00Z"}}}
    for state in (None, earlier):
        run = run_tap(workdir, config, catalog=catalog, state=state)
        assert run.returncode == 0, run.stderr
        assert sorted(run.ids("orders")) == sorted(ids_by_stream(store)["orders"])
        assert run.last_state["bookmarks"] == (state or {}).get("bookmarks", {})  # no bookmark kept or moved
    assert "orders: the catalog asks for FULL_TABLE; reading it whole from start_date" in run.stderr


def test_state_wrapped_by_meltano_or_cut_from_a_log_is_unwrapped(workdir, sandbox):
    store = sandbox(coupons=2, customers=50, orders=80, products=50)
    config = store.config(**FAST)
    first = run_tap(workdir, config)
    assert first.returncode == 0, first.stderr
    wrappers = [({"singer_state": first.last_state}, "Meltano's wrapper"),
                ({"type": "STATE", "value": first.last_state}, "a whole STATE message")]
    for wrapped, phrase in wrappers:
        again = run_tap(workdir, config, state=wrapped)
        assert again.returncode == 0, again.stderr
        assert phrase in again.stderr
        # Resumed from the bookmarks, not a full re-sync: only the newest second of each stream again.
        for name in ("customers", "orders", "products"):
            assert len(again.records(name)) < 5, name
        assert set(again.last_state) == {"bookmarks"}
