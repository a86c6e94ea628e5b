"""The tap's output loaded into PostgreSQL (pipelinewise-target-postgres) and DuckDB (target-duckdb).

Each test loads the whole store, orders with their line items, shipping consignments, coupons and
refunds included, through a sync killed half-way and resumed from the target's last state line;
checks every row in the database itself; edits and creates records (and refunds) in the store; runs
again from state and checks the upserts. PostgreSQL also answers the README's revenue-by-product query.
"""
import decimal
import json
import subprocess

import pytest

from e2e_pipeline import (ALL_STREAMS, MODIFIED, key_of, change_store, current_rows, delete_from_store, differences, discover, killed_pipeline, load_schemas,
                          run_pipeline, store_records, tool_path, write_json)

pytestmark = pytest.mark.e2e

SCHEMA = "bigcommerce"
# Fields stored as JSON columns that must come back as objects or arrays, not text or NULL.
NESTED = {"orders": [("billing_address", dict), ("consignments", dict), ("fees", list)],
          "customers": [("authentication", dict)], "products": [("custom_url", dict)],
          "coupons": [("applies_to", dict)], "order_line_items": [("applied_discounts", list)],
          "order_shipping_addresses": [("form_fields", list)], "order_coupons": [],
          "refunds": [("items", list), ("payments", list)], "brands": [("custom_url", dict)],
          "customer_groups": [("discount_rules", list)], "channels": [], "store": [("timezone", dict)],
          "gift_certificates": [], "currencies": [("default_for_country_codes", list)], "order_statuses": [],
          "promotions": [("rules", list)], "promotion_codes": [], "price_list_records": [],
          "category_trees": [("channels", list)],
          "customer_addresses": [("form_fields", list)], "product_variants": [("option_values", list)],
          "categories": [("url", dict)], "subscribers": [("consents", list)],
          "customer_attributes": [], "customer_attribute_values": [], "price_lists": [], "product_metafields": [],
          "order_metafields": [], "customer_metafields": []}

# What the reference tables are for: joins. Each pair of (table, key, table, name) joins a
# record to what it points at; the test checks every row of the join against the store.
JOINS = (("products", "brand_id", "brands", "name"), ("customers", "customer_group_id", "customer_groups", "name"),
         ("orders", "channel_id", "channels", "name"), ("orders", "status_id", "order_statuses", "name"))

# The README's example: revenue by product, from line items of orders that are not incomplete (0),
# cancelled (5) or declined (6). Money arrives as the API sends it (v2: decimal strings), so cast.
REVENUE_BY_PRODUCT = f"""
SELECT li.product_id, SUM(li.quantity) AS units, SUM(li.total_inc_tax::numeric) AS revenue
FROM {SCHEMA}.order_line_items li JOIN {SCHEMA}.orders o ON o.id = li.order_id AND o.date_modified = li.date_modified
WHERE o.status_id NOT IN (0, 5, 6)
GROUP BY li.product_id ORDER BY revenue DESC, li.product_id
"""

DUCKDB_QUERY = """
import datetime, decimal, json, sys
import duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
out = {}
for table in sys.argv[3:]:
    cur = con.execute(f'SELECT * FROM "{sys.argv[2]}"."{table}"')
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, row)) for row in cur.fetchall()]  # before the next query resets the cursor
    types = {row[0]: row[1] for row in con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
        [sys.argv[2], table]).fetchall()}
    out[table] = {"types": types, "rows": rows}
def encode(value):
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError(type(value))
print(json.dumps(out, default=encode))
"""


class Postgres:
    """pipelinewise-target-postgres writing into the session's throw-away server."""

    name = "postgres"
    venv, executable = "target-postgres", "target-postgres"

    def __init__(self, server, workdir):
        self.server = server
        self.workdir = workdir

    def config(self):
        return dict(self.server.settings(), default_target_schema=SCHEMA, hard_delete=True)

    def tables(self):
        result = {}
        for stream in ALL_STREAMS:
            types = {row["column_name"]: row["data_type"] for row in self.server.query_json(
                "SELECT column_name, data_type FROM information_schema.columns "
                f"WHERE table_schema = '{SCHEMA}' AND table_name = '{stream}'")}
            rows = self.server.query_json(f'SELECT * FROM "{SCHEMA}"."{stream}"')
            result[stream] = {"types": types, "rows": rows}
        return result


class DuckDB:
    """target-duckdb writing a database file; read back with the duckdb from the target's own venv."""

    name = "duckdb"
    venv, executable = "target-duckdb", "target-duckdb"

    def __init__(self, server, workdir):
        self.path = workdir / "warehouse.duckdb"

    def config(self):
        return {"path": str(self.path), "default_target_schema": SCHEMA, "hard_delete": True}

    def tables(self):
        python = tool_path(self.venv, "python")
        out = subprocess.run([str(python), "-c", DUCKDB_QUERY, str(self.path), SCHEMA, *ALL_STREAMS],
                             check=True, capture_output=True, text=True, timeout=120).stdout
        return json.loads(out)


@pytest.fixture(params=[Postgres, DuckDB], ids=lambda cls: cls.name)
def destination(request, workdir):
    """Each warehouse destination; PostgreSQL brings up the session's server only when needed."""
    server = request.getfixturevalue("postgres") if request.param is Postgres else None
    return request.param(server, workdir)


def check_tables(dest, sb, schemas):
    """Compare every table with the store (an order's children by the README's rule: those that
    carry their order's date_modified); return the row counts and {stream: keys the rule left out}.
    Fails with the first mismatches."""
    tables = dest.tables()
    problems, counts, stale = [], {}, {}
    for stream in ALL_STREAMS:
        rows, types = tables[stream]["rows"], tables[stream]["types"]
        counts[stream] = len(rows)
        current = current_rows(stream, rows, tables["orders"]["rows"])
        stale[stream] = {key_of(stream, r) for r in rows} - {key_of(stream, r) for r in current}
        problems += differences(stream, store_records(sb, stream), current, schemas[stream], empty_is_null=True)
        for field, prop in schemas[stream]["properties"].items():
            # (_sdc_deleted_at is the target's own metadata column with hard_delete: its type is the target's.)
            if prop.get("format") == "date-time" and "timestamp" not in types.get(field, "").lower() \
                    and field != "_sdc_deleted_at":
                problems.append(f"{dest.name} {stream}.{field} is {types.get(field)}, not a timestamp")
        for field, kind in NESTED[stream]:
            bad = [key_of(stream, r) for r in rows if r.get(field) is not None and not isinstance(
                json.loads(r[field]) if isinstance(r[field], str) else r[field], kind)]
            if bad or all(r.get(field) is None for r in rows):
                problems.append(f"{dest.name} {stream}.{field} did not arrive as {kind.__name__} (ids {bad[:5]})")
    assert not problems, f"{dest.name}:\n" + "\n".join(problems[:40])
    return counts, stale


def test_warehouse_holds_every_record_once_through_a_kill_and_upserts_changes(destination, sandbox, store_size,
                                                                              tool, workdir, record_rows):
    target = tool(destination.venv, destination.executable)
    sb = sandbox(**store_size)
    catalog = discover(workdir, sb.config(page_size=25, detect_deletions=True))
    schemas = load_schemas(catalog)
    argv = [target, "--config", write_json(workdir / "target.json", destination.config())]

    killed = killed_pipeline(workdir, "killed", workdir / "config.json", catalog, argv, "order_line_items", 3)
    assert len(killed.records("orders")) < len(sb.records("orders")), "the kill came after the orders"
    resumed = run_pipeline(workdir, "resumed", workdir / "config.json", catalog, argv, state=killed.target_state())
    assert not any(check_tables(destination, sb, schemas)[1].values()), "nothing was edited yet"
    state = resumed.target_state()
    assert state == resumed.tap_last_state(), "the target's last state line must be the tap's last STATE"
    assert set(state["bookmarks"]) >= set(MODIFIED) | {"refunds"}

    gone = delete_from_store(sb, 4)  # of the records delivered so far
    lines = {line["id"] for line in store_records(sb, "order_line_items")}
    changed = change_store(sb, 5)
    second = run_pipeline(workdir, "run2", workdir / "config.json", catalog, argv, state=state)
    # The deleted rows are gone from the warehouse (hard_delete), and only they: the tables equal the store.
    counts, stale = check_tables(destination, sb, schemas)
    # Lines an edit removed stay as rows with their order's old date, and the rule leaves out exactly those.
    assert stale["order_line_items"] == lines - {line["id"] for line in store_records(sb, "order_line_items")} \
        and stale["order_line_items"]
    for stream, ids in gone.items():
        assert {r["id"] for r in second.records(stream) if r.get("_sdc_deleted_at")} == ids, stream
    for stream in MODIFIED:
        sent = {key_of(stream, r) for r in second.records(stream)}
        assert changed[stream] <= sent and len(sent) <= len(store_records(sb, stream)) // 2, \
            f"{stream}: the second run should carry the changes only"
    assert changed["refunds"] <= {r["id"] for r in second.records("refunds")}
    if destination.name == "postgres":
        check_revenue_by_product(destination.server, sb)
        check_joins(destination.server, sb)
    record_rows(f"target-{destination.name}", counts)


def check_joins(server, sb):
    """Products to brands and categories, customers to groups, orders to channels and statuses:
    every row joins as in the store."""
    for table, key, target, name in JOINS:
        names = {record["id"]: record[name] for record in sb.records(target)}
        want = {record["id"]: names.get(record[key]) for record in sb.records(table)}
        got = {row["id"]: row["name"] for row in server.query_json(
            f'SELECT t.id, r."{name}" AS name FROM {SCHEMA}."{table}" t LEFT JOIN {SCHEMA}."{target}" r '
            f'ON r.id = t."{key}"')}
        assert got == want, f"{table} -> {target}: {sum(got.get(k) != v for k, v in want.items())} rows differ"
        assert any(want.values()) and len(set(want.values())) > 1, f"{table} -> {target}: nothing to join"
    # Products to categories: products.categories is an array of category ids.
    names = {record["category_id"]: record["name"] for record in sb.records("categories")}
    want = {product["id"]: sorted(names[c] for c in product["categories"] if c in names)
            for product in sb.records("products")}
    got = {product_id: [] for product_id in want}
    for row in server.query_json(
            f"SELECT p.id, c.name FROM {SCHEMA}.products p "
            "CROSS JOIN LATERAL jsonb_array_elements_text(p.categories) AS e(category_id) "
            f"JOIN {SCHEMA}.categories c ON c.category_id = e.category_id::int ORDER BY p.id, c.name"):
        got[row["id"]].append(row["name"])
    assert got == want and sum(map(len, want.values())) > len(want), "products -> categories rows differ"


def check_revenue_by_product(server, sb):
    """The README's query gives, to the cent, what the store's own line items add up to."""
    statuses = {order["id"]: order["status_id"] for order in sb.records("orders")}
    want = {}
    for line in store_records(sb, "order_line_items"):
        if statuses[line["order_id"]] not in (0, 5, 6):
            units, revenue = want.get(line["product_id"], (0, decimal.Decimal(0)))
            want[line["product_id"]] = (units + line["quantity"], revenue + decimal.Decimal(line["total_inc_tax"]))
    got = {row["product_id"]: (int(row["units"]), decimal.Decimal(str(row["revenue"])))
           for row in server.query_json(REVENUE_BY_PRODUCT)}
    assert got == want and want
