"""Bad input gets one clear line on stderr, a non-zero exit and nothing on stdout."""
import json
import subprocess

import pytest

from tap_harness import TAP, TapRun, _env, run_tap, write_json

GOOD = {"client_id": "cid", "access_token": "tok", "store_hash": "abc123", "start_date": "2024-01-01T00:00:00Z",
        "base_url": "http://127.0.0.1:9"}


def _check_one_line(run, *phrases):
    assert run.returncode != 0
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    assert len(run.error_lines) == 1, run.stderr
    for phrase in phrases:
        assert phrase in run.error_lines[0], run.error_lines[0]


@pytest.mark.parametrize("key", ["client_id", "access_token", "store_hash", "start_date"])
def test_missing_config_key(workdir, key):
    config = dict(GOOD)
    del config[key]
    _check_one_line(run_tap(workdir, config), f"missing {key}")


@pytest.mark.parametrize("value", ["yesterday", "2024-13-45", "31/01/2024", 20240101])
def test_unparsable_start_date(workdir, value):
    _check_one_line(run_tap(workdir, dict(GOOD, start_date=value)), "start_date")


@pytest.mark.parametrize("key, value", [("page_size", 500), ("page_size", "many"), ("request_timeout", 0),
                                        ("max_workers", 0), ("base_url", "api.bigcommerce.com")])
def test_bad_optional_setting(workdir, key, value):
    _check_one_line(run_tap(workdir, dict(GOOD, **{key: value})), key)


@pytest.mark.parametrize("key, value, phrase", [
    ("user_agent", "ETL \u2013 nightly", "user_agent 'ETL \u2013 nightly' must be printable ASCII on one line"),
    ("user_agent", "etl\r\nX-Evil: 1", "must be printable ASCII on one line"),
    ("base_url", "https://api.bigcommerce.com:99999", "has a port that is not a number from 1 to 65535"),
    ("base_url", "https://api.bigcommerce.com:https", "has a port that is not a number from 1 to 65535"),
    ("base_url", "https://api big.com", "does not name a valid host"),
    ("base_url", "https://user:pw@api.bigcommerce.com", "holds a user name or password"),
    ("base_url", "https://api.bigcommerce.com/stores/abc123/v3/", "holds the store's API path; set base_url to "
                                                              "https://api.bigcommerce.com and put the store hash"),
    ("base_url", "https://proxy.example.com/bigcommerce", "must be the API root alone, without a path"),
])
def test_bad_setting_is_refused_with_a_sentence(workdir, key, value, phrase):
    run = run_tap(workdir, dict(GOOD, **{key: value}))
    _check_one_line(run, phrase)
    assert "Unexpected error" not in run.stderr


def test_bad_store_hash(workdir):
    _check_one_line(run_tap(workdir, dict(GOOD, store_hash="not a hash!")), "store_hash")


def _run_files(workdir, config_text=None, catalog_text=None, state_text=None):
    command = TAP + ["--config", str(workdir / "c.json")]
    (workdir / "c.json").write_text(config_text if config_text is not None else json.dumps(GOOD))
    if catalog_text is not None:
        (workdir / "cat.json").write_text(catalog_text)
        command += ["--catalog", str(workdir / "cat.json")]
    if state_text is not None:
        (workdir / "s.json").write_text(state_text)
        command += ["--state", str(workdir / "s.json")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=_env())
    return TapRun(done.returncode, done.stdout, done.stderr)


def test_config_not_json(workdir):
    _check_one_line(_run_files(workdir, config_text="{not json"), "config file", "not valid JSON")


def test_config_not_an_object(workdir):
    _check_one_line(_run_files(workdir, config_text="[1, 2]"), "JSON object")


def test_config_file_missing(workdir):
    done = subprocess.run(TAP + ["--config", str(workdir / "absent.json")], capture_output=True, text=True, env=_env())
    _check_one_line(TapRun(done.returncode, done.stdout, done.stderr), "does not exist")


def test_state_not_json(workdir):
    _check_one_line(_run_files(workdir, state_text="{"), "state file", "not valid JSON")


@pytest.mark.parametrize("state, phrase", [
    ([], "JSON object"),
    ({"bookmarks": {"orders": {"date_modified": "2024-01-01T00:00:00Z", "ranges": [["2024-02-01T00:00:00Z"]]}}},
     "orders bookmark has ranges that are not a list"),
    ({"bookmarks": {"orders": {"date_modified": "2024-01-01T00:00:00Z",
                               "ranges": [["2024-02-01T00:00:00Z", None], ["2024-01-01T00:00:00Z", None]]}}},
     "orders bookmark has ranges that are not a list"),
    ({"bookmarks": []}, "bookmarks must be a JSON object"),
    ({"bookmarks": {"orders": "2024-01-01"}}, "bookmark for orders"),
    ({"bookmarks": {"orders": {"date_modified": "last tuesday"}}}, "orders bookmark date_modified"),
    ({"bookmarks": {"coupons": {"version": "x", "last_id": 3}}}, "coupons bookmark version"),
])
def test_state_wrong_shape(workdir, state, phrase):
    _check_one_line(_run_files(workdir, state_text=json.dumps(state)), phrase)


def test_catalog_not_json(workdir):
    _check_one_line(_run_files(workdir, catalog_text="nope"), "catalog file", "not valid JSON")


@pytest.mark.parametrize("catalog, phrase", [
    ({"streams": {}}, '"streams" list'),
    ({"streams": [{"tap_stream_id": "coupons", "schema": {"properties": {"id": {}}}, "metadata": []}] * 2},
     "lists the stream coupons more than once"),
    ({"streams": [{"tap_stream_id": "orders", "schema": {"properties": {"id": {}, "date_modified": {}}},
                   "metadata": [{"breadcrumb": [], "metadata": {"selected": True, "replication-method": "LOG_BASED"}}]}]},
     "asks for orders to be replicated 'LOG_BASED', but it can only be read INCREMENTAL or FULL_TABLE"),
    ({"streams": [{"tap_stream_id": "returns", "schema": {"properties": {}}, "metadata": []}]},
     "stream 'returns' that this tap does not have"),
    ({"streams": [{"tap_stream_id": "orders", "schema": {"properties": {}}, "metadata": {}}]}, "metadata"),
    ({"streams": [{"tap_stream_id": "orders", "schema": "x", "metadata": []}]}, "schema for orders"),
])
def test_catalog_wrong_shape(workdir, catalog, phrase):
    _check_one_line(_run_files(workdir, catalog_text=json.dumps(catalog)), phrase)


def test_start_date_formats_are_accepted(workdir):
    for value in ("2024-01-31", "2024-01-31T10:00:00", "2024-01-31T10:00:00+02:00", "01/31/2024"):
        run = run_tap(workdir, dict(GOOD, start_date=value), "--discover")
        assert run.returncode == 0, (value, run.stderr)


def test_write_json_helper_round_trips(workdir):
    assert json.loads(open(write_json(workdir / "x.json", {"a": 1})).read()) == {"a": 1}
