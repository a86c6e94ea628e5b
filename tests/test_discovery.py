"""Discovery prints a Singer catalog built from the bundled schemas and the stream rows."""
import json

from tap_harness import run_tap

CONFIG = {"client_id": "cid", "access_token": "tok", "store_hash": "abc123", "start_date": "2024-01-01"}


def test_discover_lists_every_stream_with_standard_metadata(workdir):
    run = run_tap(workdir, CONFIG, "--discover")
    assert run.returncode == 0, run.stderr
    catalog = json.loads(run.stdout)
    entries = {entry["tap_stream_id"]: entry for entry in catalog["streams"]}
    assert sorted(entries) == sorted(["brands", "categories", "category_trees", "channels", "coupons", "currencies", "customer_addresses",
                               "customer_attribute_values", "customer_attributes", "customer_groups", "customers",
                               "customer_metafields", "gift_certificates", "order_coupons", "order_line_items",
                               "order_metafields", "order_shipping_addresses", "order_statuses", "orders",
                               "price_list_records", "price_lists", "product_metafields", "product_variants", "products",
                               "promotion_codes", "promotions", "refunds", "store", "subscribers"])
    full_tables = ("coupons", "brands", "customer_groups", "channels", "store", "gift_certificates", "currencies",
                   "order_statuses", "promotions", "promotion_codes", "category_trees", "customer_addresses",
                   "product_variants", "categories")
    replication_keys = dict({name: None for name in full_tables}, refunds="created")
    for name, entry in entries.items():
        root = next(m["metadata"] for m in entry["metadata"] if m["breadcrumb"] == [])
        keys = {"categories": ["tree_id", "category_id"], "price_list_records": ["price_list_id", "variant_id", "currency"]}
        assert root["table-key-properties"] == keys.get(name, ["id"])
        # channels, currencies and store need scopes beyond the four every account has: opted into.
        default = name not in ("channels", "currencies", "store")
        assert root["selected"] is default and root["selected-by-default"] is default, name
        children = ("order_line_items", "order_shipping_addresses", "order_coupons")
        parent = "orders" if name in children else "promotions" if name == "promotion_codes" else None
        assert root.get("parent-tap-stream-id") == parent, name
        fields = {tuple(m["breadcrumb"]): m["metadata"] for m in entry["metadata"] if m["breadcrumb"]}
        assert set(fields) == {("properties", f) for f in entry["schema"]["properties"]}
        for key in root["table-key-properties"]:
            assert fields[("properties", key)]["inclusion"] == "automatic"
        key = replication_keys.get(name, "date_modified")
        if key is None:
            assert root["forced-replication-method"] == "FULL_TABLE"
            assert "valid-replication-keys" not in root
            if name in ("coupons", "brands", "promotions", "category_trees"):  # no dates in the API at all
                assert "date_modified" not in entry["schema"]["properties"]
        else:
            assert root["forced-replication-method"] == "INCREMENTAL"
            assert root["valid-replication-keys"] == [key]
            assert fields[("properties", key)]["inclusion"] == "automatic"


def test_every_date_field_is_declared_date_time_and_money_keeps_digits(workdir):
    catalog = json.loads(run_tap(workdir, CONFIG, "--discover").stdout)
    schemas = {entry["stream"]: entry["schema"]["properties"] for entry in catalog["streams"]}
    for stream, props in schemas.items():
        for name, schema in props.items():
            if name.startswith("date_") and name != "date_last_imported":
                assert schema.get("format") == "date-time", (stream, name)
    assert "string" in schemas["orders"]["total_inc_tax"]["type"]
    assert "number" not in schemas["orders"]["total_inc_tax"]["type"]
    assert schemas["orders"]["billing_address"]["properties"]["street_1"]
    assert {"addresses", "attributes", "form_fields", "store_credit_amounts"} <= set(schemas["customers"])
    assert {"variants", "images", "custom_fields", "bulk_pricing_rules"} <= set(schemas["products"])


def test_version_and_help(workdir):
    version = run_tap(workdir, CONFIG, "--version")
    assert version.returncode == 0 and version.stdout.startswith("tap-bigcommerce ")
    help_run = run_tap(workdir, CONFIG, "--help")
    assert help_run.returncode == 0 and "--properties" in help_run.stdout and "--catalog" in help_run.stdout
