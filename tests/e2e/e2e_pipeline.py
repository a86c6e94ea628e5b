"""Run the tap into a Singer target the way a user does, and compare what landed with the store.

The tap and each target run as separate programs from their own virtualenvs, joined by a shell
pipe (`tap | tee tap.out | target > target.out`), so the tests exercise exactly the command lines
that docs/loading.md shows.
"""
import datetime as dt
import decimal
import json
import logging
import os
import re
import shlex
import subprocess
import sys
from email.utils import parsedate_to_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENVS = Path(os.environ.get("VENVS", ROOT / ".venvs"))
STREAMS = ("coupons", "customers", "orders", "products")
INCREMENTAL = ("customers", "orders", "products")
ORDER_FAMILY = ("order_line_items", "order_shipping_addresses", "order_coupons", "refunds")
ORDER_CHILDREN = ORDER_FAMILY[:3]  # written with their order, stamped with its date_modified
# Full tables the sandbox can edit, and those it derives (addresses, variants) or keeps fixed.
TABLES = ("brands", "customer_groups", "channels", "gift_certificates", "currencies", "promotions", "promotion_codes",
          "category_trees", "categories")
FIXED = ("customer_addresses", "product_variants", "order_statuses", "store")
# Filtered on date_modified without a sort: read by date window, bookmarked on date_modified.
WINDOWS = ("subscribers", "customer_attributes", "customer_attribute_values", "price_lists", "price_list_records",
           "product_metafields", "order_metafields", "customer_metafields")
ALL_STREAMS = STREAMS + ORDER_FAMILY + TABLES + FIXED + WINDOWS
FULL_TABLES = ("coupons",) + TABLES + FIXED  # read whole every run
# Streams that need a scope beyond the usual four: not selected by default (discovery, meltano.yml).
OPTED_IN = ("channels", "currencies", "store")
# Bookmarked on date_modified (the order family shares the orders bookmark); refunds are bookmarked on
# created and re-read over the refund look-back window; coupons are a full table.
MODIFIED = INCREMENTAL + ORDER_FAMILY[:3] + WINDOWS
UTC = dt.timezone.utc
LOGGER = logging.getLogger("e2e")

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)\Z")
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z\Z")
RFC2822 = re.compile(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\Z")


def in_ci():
    """True when running under CI (CI=true), where a missing tool is a failure, not a skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def tap_executable():
    """The tap-bigcommerce next to the running Python (the tap's own .venv), else on PATH."""
    beside = Path(sys.executable).parent / "tap-bigcommerce"
    if beside.exists():
        return str(beside)
    import shutil

    found = shutil.which("tap-bigcommerce")
    if not found:
        raise FileNotFoundError("tap-bigcommerce is not installed; run `make venv`")
    return found


def tool_path(venv, executable):
    """Path of an executable in one of the .venvs/ built by scripts/setup-targets.sh (may not exist)."""
    return VENVS / venv / "bin" / executable


def write_json(path, value):
    """Write `value` as JSON to `path` and return the path as a string."""
    Path(path).write_text(json.dumps(value, indent=2))
    return str(path)


def discover(workdir, config):
    """Run discovery; return the catalog path, with every stream selected (the OPTED_IN streams, which
    need scopes beyond the usual four, are opted into as a user with those scopes would)."""
    workdir = Path(workdir)
    config_path = write_json(workdir / "config.json", config)
    catalog = workdir / "catalog.json"
    with open(workdir / "discover.err", "w") as err:
        found = subprocess.run([tap_executable(), "--config", config_path, "--discover"],
                               stdout=subprocess.PIPE, stderr=err, check=True, timeout=120).stdout
    entries = json.loads(found)
    for entry in entries["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = True
    return write_json(catalog, entries)


class Run:
    """One `tap | target` run: the tap's messages and the target's stdout lines."""

    def __init__(self, workdir, label):
        self.dir = Path(workdir)
        self.label = label
        self.tap_out = self.dir / f"{label}.tap.out"
        self.target_out = self.dir / f"{label}.target.out"

    def messages(self):
        """Every Singer message the tap wrote, parsed (numbers as Decimal, as targets read them)."""
        with open(self.tap_out) as handle:
            return [json.loads(line, parse_float=decimal.Decimal) for line in handle if line.strip()]

    def records(self, stream):
        """The records of one stream, in the order the tap emitted them."""
        return [m["record"] for m in self.messages() if m["type"] == "RECORD" and m["stream"] == stream]

    def tap_last_state(self):
        """The value of the tap's last STATE message."""
        states = [m["value"] for m in self.messages() if m["type"] == "STATE"]
        assert states, f"{self.label}: the tap emitted no STATE"
        return states[-1]

    def target_state(self):
        """The last line the target printed, parsed: the state to resume from (`tail -1`)."""
        lines = [line for line in self.target_out.read_text().splitlines() if line.strip()]
        assert lines, f"{self.label}: the target printed no state line"
        return json.loads(lines[-1])


def run_pipeline(workdir, label, config_path, catalog_path, target_argv, state=None, timeout=300):
    """Run `tap [--state] | tee tap.out | target > target.out` in bash with pipefail; return a Run."""
    workdir = Path(workdir)
    run = Run(workdir, label)
    tap = [tap_executable(), "--config", str(config_path), "--catalog", str(catalog_path)]
    if state is not None:
        tap += ["--state", write_json(workdir / f"{label}.state.json", state)]
    q = shlex.join
    script = (
        f"set -o pipefail; {q(tap)} 2> {shlex.quote(str(workdir / (label + '.tap.err')))}"
        f" | tee {shlex.quote(str(run.tap_out))}"
        f" | {q([str(a) for a in target_argv])} 2> {shlex.quote(str(workdir / (label + '.target.err')))}"
        f" > {shlex.quote(str(run.target_out))}"
    )
    LOGGER.info("%s: %s", label, script)
    result = subprocess.run(["bash", "-c", script], cwd=workdir, timeout=timeout)
    if result.returncode != 0:
        tails = []
        for name in ("tap.err", "target.err"):
            path = workdir / f"{label}.{name}"
            if path.exists():
                noise = ("METRIC:", "Column at position")  # tap metrics, target-duckdb's sniffer notes
                text = [line for line in path.read_text().splitlines() if not any(n in line for n in noise)]
                tails.append(f"--- {name} (last lines) ---\n" + "\n".join(text[-25:]))
        raise AssertionError(f"{label}: pipeline exited {result.returncode}\n{script}\n" + "\n".join(tails))
    return run


def killed_pipeline(workdir, label, config_path, catalog_path, target_argv, stream, after_states):
    """Run the tap, kill it (SIGKILL) once it has written `after_states` STATE messages after its first
    `stream` record, and feed the target every line the tap wrote before it died, as a pipe into a
    target would; return a Run. Fails if the tap finished first: a kill that never happens tests nothing."""
    workdir = Path(workdir)
    run = Run(workdir, label)
    tap = [tap_executable(), "--config", str(config_path), "--catalog", str(catalog_path)]
    states, started = 0, False
    with open(workdir / f"{label}.tap.err", "w") as err, open(run.tap_out, "w") as out:
        process = subprocess.Popen(tap, stdout=subprocess.PIPE, stderr=err, text=True)
        for line in process.stdout:
            out.write(line)
            message = json.loads(line)
            started = started or (message["type"] == "RECORD" and message["stream"] == stream)
            states += started and message["type"] == "STATE"
            if states == after_states:
                process.kill()
                break
        process.stdout.close()
        process.wait(timeout=60)
    assert states == after_states, f"{label}: the tap finished after {states} STATE messages, before the kill"
    with open(run.tap_out) as feed, open(run.target_out, "w") as out, open(workdir / f"{label}.target.err", "w") as err:
        subprocess.run([str(a) for a in target_argv], stdin=feed, stdout=out, stderr=err, check=True, timeout=300)
    return run


# ----- comparing values -----

def as_instant(value):
    """An aware UTC datetime for a date-time string (RFC 3339, ISO 8601 or RFC 2822), else None."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    if RFC2822.match(value):
        return parsedate_to_datetime(value).astimezone(UTC)
    if re.match(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d", value):
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def canon(value):
    """A comparable form: numbers as int/float, date-time strings as instants, JSON text decoded."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float, decimal.Decimal)):
        number = decimal.Decimal(str(value))
        return int(number) if number == number.to_integral_value() else float(number)
    if isinstance(value, dict):
        return {key: canon(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [canon(item) for item in value]
    instant = as_instant(value)
    return instant if instant is not None else value


def expected_value(value, prop):
    """What the store's value should become after the tap: dates as instants, "" dates as None."""
    if prop.get("format") == "date-time":
        return None if value in ("", None) else as_instant(value)
    return canon(value)


def actual_value(value, prop):
    """A destination's value in comparable form (JSON columns may arrive as text)."""
    types = prop.get("type", [])
    types = [types] if isinstance(types, str) else types
    if isinstance(value, str) and ("object" in types or "array" in types) and value[:1] in "[{":
        value = json.loads(value, parse_float=decimal.Decimal)
    if prop.get("format") == "date-time":
        return as_instant(value)
    return canon(value)


# Streams whose key is not `id` (categories: a category id is unique within its tree; a price
# record is one variant's price in one currency on one price list).
KEYS = {"categories": ("tree_id", "category_id"), "price_list_records": ("price_list_id", "variant_id", "currency")}


def key_of(stream, record):
    """What identifies a record of the stream: its id, or a tuple of its key fields."""
    names = KEYS.get(stream)
    return tuple(record[name] for name in names) if names else record["id"]


def differences(stream, expected_records, actual_records, schema, empty_is_null=False):
    """Mismatches between the store's records and a destination's, by key; empty when they agree.

    Every field that the stream's schema declares and the store sends must arrive with the same value;
    extra fields (include= sub-resources, target metadata columns) are not compared here.
    `empty_is_null`: the pipelinewise-style targets load through CSV, where "" and NULL are one value.
    """
    problems = []
    props = schema["properties"]
    actual_by_key = {}
    for row in actual_records:
        if key_of(stream, row) in actual_by_key:
            problems.append(f"{stream} key={key_of(stream, row)}: loaded twice")
        actual_by_key[key_of(stream, row)] = row
    expected_by_key = {key_of(stream, rec): rec for rec in expected_records}
    missing = sorted(set(expected_by_key) - set(actual_by_key))
    extra = sorted(set(actual_by_key) - set(expected_by_key))
    if missing:
        problems.append(f"{stream}: {len(missing)} records missing, e.g. {missing[:5]}")
    if extra:
        problems.append(f"{stream}: {len(extra)} records not in the store, e.g. {extra[:5]}")
    for rid in sorted(set(expected_by_key) & set(actual_by_key)):
        want, got = expected_by_key[rid], actual_by_key[rid]
        for field, prop in props.items():
            if field not in want:
                continue
            if field not in got:
                problems.append(f"{stream} key={rid}: field {field} missing")
                continue
            expected, actual = expected_value(want[field], prop), actual_value(got[field], prop)
            if empty_is_null and expected == "" and actual is None:
                continue
            if expected != actual:
                problems.append(f"{stream} key={rid}: {field}: store {want[field]!r}, loaded {got[field]!r}")
    return problems


def load_schemas(catalog_path):
    """Stream name -> JSON schema, from a discovered catalog."""
    catalog = json.loads(Path(catalog_path).read_text())
    return {entry["stream"]: entry["schema"] for entry in catalog["streams"]}


def rows_table(title, counts):
    """A small text table: stream | rows, under a title."""
    width = max(len(s) for s in counts) if counts else 6
    lines = [title, f"  {'stream':<{width}}  rows"]
    lines += [f"  {stream:<{width}}  {rows:>5}" for stream, rows in sorted(counts.items())]
    return "\n".join(lines)


# ----- what the store holds, in the shape the tap lands it -----

def store_records(sb, stream):
    """The store's truth for a stream: orders as the tap asks for them (consignments with line items,
    fees); line items from /orders/{id}/products, coupons from /orders/{id}/coupons, each with its
    order's date_modified; shipping consignments as the orders carry them; refunds from their list."""
    orders = sb.records("orders", sb.order_tokens(["consignments.line_items", "fees"], "object"))
    if stream == "orders":
        return orders
    if stream == "order_line_items":
        return [dict(line, date_modified=order["date_modified"]) for order in orders
                for line in sb.order_lines(order["id"])]
    if stream == "order_shipping_addresses":
        return [dict({k: v for k, v in consignment.items() if k != "line_items"}, order_id=order["id"],
                     date_modified=order["date_modified"])
                for order in orders for consignment in order["consignments"]["shipping"]]
    if stream == "order_coupons":
        return [dict(coupon, date_modified=order["date_modified"]) for order in orders
                for coupon in sb.order_coupons(order["id"])]
    if stream == "refunds":
        return sb.refunds()
    return sb.records(stream)


# Lists whose deleted records the tap reports (detect_deletions) and whose deletion leaves no
# orphans behind in a stream it does not (deleting a product takes its variants along, and the
# variants are read whole, so their deletions are reported too; orders are archived, not deleted).
DELETABLE = ("products", "customers", "coupons", "brands", "subscribers", "gift_certificates", "customer_groups")


def delete_from_store(sb, count):
    """Delete `count` records, spread over the id range, from each DELETABLE list; {stream: ids}."""
    gone = {}
    for stream in DELETABLE:
        ids = [record["id"] for record in sb.records(stream)]
        gone[stream] = set(ids[1::max(len(ids) // count, 1)][:count])
        sb.delete(stream, ids=sorted(gone[stream]))
    return gone


def current_rows(stream, rows, orders):
    """The rows of a destination a reader should count: all of them, except for an order's
    children, which count only while they carry their order's latest date_modified (README,
    "Order children after an edit"): a line an edit removed keeps its old row, with an older date.
    `orders`: the destination's orders rows (the latest per id)."""
    if stream not in ORDER_CHILDREN:
        return rows
    dates = {order["id"]: as_instant(order["date_modified"]) for order in orders}
    return [row for row in rows if as_instant(row["date_modified"]) == dates.get(row["order_id"])]


def change_store(sb, count):
    """Edit `count` records and create a few in every list the sandbox holds, and add two refunds;
    returns {stream: ids changed}, the changed orders' children included (an edited order changes its
    first line's quantity too). The sandbox's edits remove the last line of half the orders (and
    their coupons): more orders are edited, oldest first, until one lost a line."""
    lines_before = {line["id"] for line in store_records(sb, "order_line_items")}
    changed = {stream: set(sb.edit(stream, count=count)) | set(sb.create(stream, 3))
               for stream in STREAMS + TABLES + WINDOWS}
    while lines_before <= {line["id"] for line in store_records(sb, "order_line_items")}:
        changed["orders"] |= set(sb.edit("orders", count=1))
    # The sandbox edits by record number; categories and price records are keyed by several fields.
    changed["categories"] = {key_of("categories", r) for r in sb.records("categories")
                             if r["category_id"] in changed["categories"]}
    changed["price_list_records"] = {key_of("price_list_records", r) for r in sb.records("price_list_records")
                                     if r["variant_id"] in changed["price_list_records"]}
    refunds = sb.add_refunds(2)
    changed["refunds"] = {refund["id"] for refund in refunds}
    for stream in FIXED:
        changed[stream] = set()  # read whole each run; what changed in them is checked by the full comparison
    changed["orders"] |= {refund["order_id"] for refund in refunds}  # a refund modifies its order
    for stream in ORDER_FAMILY[:3]:  # an order's children travel with it
        changed[stream] = {r["id"] for r in store_records(sb, stream) if r["order_id"] in changed["orders"]}
    return changed
