"""singer-check-tap (singer-tools 0.4.1) over the tap's output, on a first run and a run from state.

singer-check-tap validates every RECORD against the latest SCHEMA of its stream with jsonschema's
Draft 4 validator and a FormatChecker; singer-tools installs strict-rfc3339, so "date-time" values
must be strict RFC 3339 (it also parses each top-level date-time property with strict_rfc3339).
It exits 1 on a RECORD before its SCHEMA. The negative controls below prove both on this install.

Stock singer-check-tap crashes on a null object whose schema declares a date-time inside
(products.primary_image), so the tap's output goes through scripts/singer_check.py, which runs the
same check with that one crash fixed; test_stock_singer_check_tap_crashes_on_null_objects pins the bug.
"""
import json
import subprocess

import pytest

from e2e_pipeline import ALL_STREAMS, ROOT, change_store, discover, run_pipeline

pytestmark = pytest.mark.e2e


@pytest.fixture
def checker(tool):
    """The singer-check-tap command used on the tap's output: the guarded wrapper in the singer-tools venv."""
    tool("singer-tools", "singer-check-tap")
    return [tool("singer-tools", "python"), str(ROOT / "scripts" / "singer_check.py")]


def check(argv, workdir, text):
    """Feed Singer lines to a checker on stdin; return (exit code, output)."""
    result = subprocess.run(argv, input=text, capture_output=True, text=True, cwd=workdir, timeout=300)
    return result.returncode, result.stdout + result.stderr


def lines(*messages):
    return "".join(json.dumps(m) + "\n" for m in messages)


def test_tap_output_passes_singer_check_tap_first_run_and_from_state(sandbox, store_size, checker, workdir):
    sb = sandbox(**store_size)
    catalog = discover(workdir, sb.config(page_size=100))

    first = run_pipeline(workdir, "check1", workdir / "config.json", catalog, checker)
    report = first.target_out.read_text()
    assert "The output is valid." in report, report
    assert {m["stream"] for m in first.messages() if m["type"] == "RECORD"} == set(ALL_STREAMS)
    print(report)

    change_store(sb, 3)
    second = run_pipeline(workdir, "check2", workdir / "config.json", catalog, checker,
                          state=first.tap_last_state())
    assert "The output is valid." in second.target_out.read_text()


SCHEMA = {"type": "SCHEMA", "stream": "s", "key_properties": ["id"],
          "schema": {"type": "object", "properties": {
              "id": {"type": "integer"},
              "at": {"type": ["null", "string"], "format": "date-time"},
              "image": {"type": ["null", "object"], "properties": {
                  "date_modified": {"type": ["null", "string"], "format": "date-time"}}}}}}


@pytest.mark.parametrize("value, valid", [
    ("2018-12-05T20:16:55Z", True),
    ("2018-12-05T20:16:55+00:00", True),
    ("2018-12-05 20:16:55", False),
    ("Wed, 05 Dec 2018 20:16:55 +0000", False),
    ("2018-12-05", False),
])
def test_singer_check_tap_enforces_rfc3339(checker, workdir, value, valid):
    for record in ({"id": 1, "at": value}, {"id": 1, "image": {"date_modified": value}}):
        code, output = check(checker, workdir, lines(SCHEMA, {"type": "RECORD", "stream": "s", "record": record}))
        assert (code == 0) == valid, output


def test_singer_check_tap_rejects_a_record_before_its_schema(checker, workdir):
    code, output = check(checker, workdir, lines({"type": "RECORD", "stream": "s", "record": {"id": 1}}, SCHEMA))
    assert code != 0 and "before the schema" in output


def test_stock_singer_check_tap_crashes_on_null_objects(tool, checker, workdir):
    text = lines(SCHEMA, {"type": "RECORD", "stream": "s", "record": {"id": 1, "image": None}})
    code, output = check([tool("singer-tools", "singer-check-tap")], workdir, text)
    assert code != 0 and "'NoneType' object has no attribute 'get'" in output, \
        "singer-tools handles null objects now: scripts/singer_check.py can go"
    assert check(checker, workdir, text)[0] == 0
