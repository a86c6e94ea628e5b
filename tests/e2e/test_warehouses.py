"""The tap's output loaded into PostgreSQL (pipelinewise-target-postgres) and DuckDB (target-duckdb).

Each test loads the whole store, checks every row in the database itself, edits and creates
records in the store, resumes from the target's last state line and checks the upserts.
"""
import json
import subprocess

import pytest

from e2e_pipeline import (INCREMENTAL, STREAMS, differences, discover, load_schemas, run_pipeline, tool_path,
                      write_json)

pytestmark = pytest.mark.e2e

SCHEMA = "bigcommerce"
# Fields stored as JSON columns that must come back as objects, not text or NULL.
NESTED = {"orders": "billing_address", "customers": "authentication", "products": "custom_url",
          "coupons": "applies_to"}

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
        return dict(self.server.settings(), default_target_schema=SCHEMA)

    def tables(self):
        result = {}
        for stream in STREAMS:
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
        return {"path": str(self.path), "default_target_schema": SCHEMA}

    def tables(self):
        python = tool_path(self.venv, "python")
        out = subprocess.run([str(python), "-c", DUCKDB_QUERY, str(self.path), SCHEMA, *STREAMS],
                             check=True, capture_output=True, text=True, timeout=120).stdout
        return json.loads(out)


@pytest.fixture(params=[Postgres, DuckDB], ids=lambda cls: cls.name)
def destination(request, workdir):
    """Each warehouse destination; PostgreSQL brings up the session's server only when needed."""
    server = request.getfixturevalue("postgres") if request.param is Postgres else None
    return request.param(server, workdir)


def check_tables(dest, sb, schemas):
    """Compare every table with the store; return the row counts. Fails with the first mismatches."""
    tables = dest.tables()
    problems, counts = [], {}
    for stream in STREAMS:
        rows, types = tables[stream]["rows"], tables[stream]["types"]
        counts[stream] = len(rows)
        problems += differences(stream, sb.records(stream), rows, schemas[stream], empty_is_null=True)
        for field, prop in schemas[stream]["properties"].items():
            if prop.get("format") == "date-time" and "timestamp" not in types.get(field, "").lower():
                problems.append(f"{dest.name} {stream}.{field} is {types.get(field)}, not a timestamp")
        field = NESTED[stream]
        bad = [r["id"] for r in rows if r.get(field) is not None and not isinstance(
            json.loads(r[field]) if isinstance(r[field], str) else r[field], dict)]
        if bad or all(r.get(field) is None for r in rows):
            problems.append(f"{dest.name} {stream}.{field} did not arrive as objects (ids {bad[:5]})")
    assert not problems, f"{dest.name}:\n" + "\n".join(problems[:40])
    return counts


def test_warehouse_holds_every_record_once_and_upserts_changes(destination, sandbox, store_size, tool, workdir,
                                                               record_rows):
    target = tool(destination.venv, destination.executable)
    sb = sandbox(**store_size)
    catalog = discover(workdir, sb.config(page_size=100))
    schemas = load_schemas(catalog)
    argv = [target, "--config", write_json(workdir / "target.json", destination.config())]

    first = run_pipeline(workdir, "run1", workdir / "config.json", catalog, argv)
    check_tables(destination, sb, schemas)
    state = first.target_state()
    assert state == first.tap_last_state(), "the target's last state line must be the tap's last STATE"
    assert set(state["bookmarks"]) >= set(INCREMENTAL)

    edited = {stream: sb.edit(stream, count=5) for stream in STREAMS}
    for stream in STREAMS:
        sb.create(stream, 3)
    second = run_pipeline(workdir, "run2", workdir / "config.json", catalog, argv, state=state)
    counts = check_tables(destination, sb, schemas)
    for stream in INCREMENTAL:
        sent = {r["id"] for r in second.records(stream)}
        assert set(edited[stream]) <= sent and len(sent) < len(sb.records(stream)) // 2, \
            f"{stream}: the second run should carry the changes only"
    record_rows(f"target-{destination.name}", counts)
