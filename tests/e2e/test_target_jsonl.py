"""The tap's output loaded by target-jsonl 0.1.4: every record once, values intact, resumes from state."""
import json

import pytest

from e2e_pipeline import (ALL_STREAMS, FULL_TABLES, ORDER_CHILDREN, key_of, MODIFIED, RFC3339_UTC, as_instant, change_store, current_rows, differences,
                          discover, load_schemas, run_pipeline, store_records, write_json)

pytestmark = pytest.mark.e2e


def read_lines(folder, stream):
    """Every record target-jsonl wrote for a stream, in file order (the file grows across runs)."""
    path = folder / f"{stream}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def date_fields(schema):
    """Names of the top-level date-time properties of a schema."""
    return [name for name, prop in schema["properties"].items() if prop.get("format") == "date-time"]


def test_jsonl_loads_every_record_and_resumes_with_only_changes(sandbox, store_size, tool, workdir, record_rows):
    target = tool("target-jsonl", "target-jsonl")
    sb = sandbox(**store_size)
    catalog = discover(workdir, sb.config(page_size=100))
    schemas = load_schemas(catalog)
    out = workdir / "jsonl"
    out.mkdir()
    target_config = write_json(workdir / "target-jsonl.json",
                               {"destination_path": str(out), "do_timestamp_file": False})
    argv = [target, "--config", target_config]

    first = run_pipeline(workdir, "run1", workdir / "config.json", catalog, argv)

    problems = []
    first_lines = {}
    for stream in ALL_STREAMS:
        lines = read_lines(out, stream)
        first_lines[stream] = len(lines)
        problems += differences(stream, store_records(sb, stream), lines, schemas[stream])
        for record in lines:
            for field in date_fields(schemas[stream]):
                value = record.get(field)
                if value is not None and not RFC3339_UTC.match(value):
                    problems.append(f"{stream} id={record['id']}: {field}={value!r} is not RFC 3339 UTC")
    assert not problems, "\n".join(problems[:40])
    orders = {r["id"]: r for r in read_lines(out, "orders")}
    assert all(isinstance(r["billing_address"], dict) and r["billing_address"].get("email") is not None
               for r in orders.values()), "orders.billing_address must arrive as an object"
    state = first.target_state()
    assert state == first.tap_last_state(), "target-jsonl must echo the tap's last STATE"
    assert set(state["bookmarks"]) >= set(MODIFIED) | {"refunds"}

    changed = change_store(sb, 5)
    second = run_pipeline(workdir, "run2", workdir / "config.json", catalog, argv, state=state)

    counts = {}
    orders = {r["id"]: r for r in read_lines(out, "orders")}
    for stream in ALL_STREAMS:
        lines = read_lines(out, stream)
        new = lines[first_lines[stream]:]
        new_ids = [key_of(stream, r) for r in new]
        assert len(new_ids) == len(set(new_ids)), f"{stream}: a record was emitted twice in one run"
        assert changed[stream] <= set(new_ids), f"{stream}: edited or created records missing from the second run"
        truth = store_records(sb, stream)
        if stream in MODIFIED:
            bookmark = as_instant(state["bookmarks"][stream]["date_modified"])
            early = [key_of(stream, r) for r in new if as_instant(r["date_modified"]) < bookmark]
            assert not early, f"{stream}: second run re-emitted records modified before the bookmark: {early[:5]}"
            assert len(new) < len(lines) - len(new), f"{stream}: the second run re-read the whole stream"
        elif stream in FULL_TABLES:
            assert len(new) == len(truth), f"{stream} is a full table: every record again"
        # The latest line per id is what a reader of the files sees: it must match the store now
        # (for an order's children, the lines still stamped with their order's latest date).
        every = {key_of(stream, r): r for r in lines}
        latest = {key_of(stream, r): r for r in current_rows(stream, list(every.values()), orders.values())}
        assert not differences(stream, truth, list(latest.values()), schemas[stream])
        if stream in ORDER_CHILDREN:  # what the rule leaves out is exactly what an edit removed
            assert set(every) - set(latest) == set(every) - {key_of(stream, r) for r in truth}
        if stream == "order_line_items":
            assert set(every) - set(latest), "the edits should have removed a line"
        store = {key_of(stream, r): r for r in truth}
        for rid in changed[stream]:
            if "date_modified" in store[rid]:
                assert as_instant(latest[rid]["date_modified"]) == as_instant(store[rid]["date_modified"])
        counts[stream] = len(latest)
        print(f"jsonl {stream}: {len(lines)} lines after two runs, {len(new)} in the second")
    assert second.target_state()["bookmarks"]["orders"] != state["bookmarks"]["orders"]
    record_rows("target-jsonl", counts)
