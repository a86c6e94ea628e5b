"""The HTTP client: retries, 429 pacing, clear errors, and secrets kept out of every line."""
import json
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import responses

from tap_harness import FAST, ids_by_stream, run_tap
from tap_bigcommerce.client import Client
from tap_bigcommerce.pacing import Flow, Pacer, Turns
from tap_bigcommerce.config import parse_config
from tap_bigcommerce.errors import ApiError
from tap_bigcommerce.streams import STREAMS_BY_NAME

BASE = "https://api.example.test"


def _client(**overrides):
    raw = {"client_id": "cid", "access_token": "tok", "store_hash": "abc", "start_date": "2024-01-01",
           "base_url": BASE, "retry_base_delay": 0, **overrides}
    return Client(parse_config(raw), sleep=lambda seconds: None)


@responses.activate
def test_v2_204_is_an_empty_last_page():
    responses.get(f"{BASE}/stores/abc/v2/orders", status=204, body=b"")
    page = _client().get_page(STREAMS_BY_NAME["orders"], {"limit": 250})
    assert page.records == [] and page.has_more is False


@responses.activate
def test_v3_envelope_reports_more_pages_from_meta():
    body = {"data": [{"id": 1}], "meta": {"pagination": {"total": 2, "count": 1, "per_page": 1,
                                                          "current_page": 1, "total_pages": 2}}}
    responses.get(f"{BASE}/stores/abc/v3/catalog/products", json=body)
    page = _client().get_page(STREAMS_BY_NAME["products"], {"limit": 1})
    assert page.records == [{"id": 1}] and page.has_more is True and page.total == 2


@responses.activate
def test_date_filters_keep_colons_and_encode_plus():
    responses.get(f"{BASE}/stores/abc/v2/orders", status=204)
    _client().get_page(STREAMS_BY_NAME["orders"], {"min_date_modified": "2024-01-01T00:00:00+00:00"})
    assert responses.calls[0].request.url.endswith("min_date_modified=2024-01-01T00:00:00%2B00:00")


@responses.activate
def test_5xx_then_success_is_retried():
    url = f"{BASE}/stores/abc/v2/coupons"
    responses.get(url, status=502)
    responses.get(url, status=503)
    responses.get(url, json=[{"id": 1}])
    assert _client().get_page(STREAMS_BY_NAME["coupons"], {"limit": 250}).records == [{"id": 1}]
    assert len(responses.calls) == 3


@responses.activate
def test_gives_up_after_max_retries_with_one_sentence():
    url = f"{BASE}/stores/abc/v2/coupons"
    for _ in range(4):
        responses.get(url, status=500)
    with pytest.raises(ApiError, match=r"^coupons: giving up after 4 tries: the store answered 500"):
        _client(max_retries=3).get_page(STREAMS_BY_NAME["coupons"], {"limit": 250})


@responses.activate
def test_429_waits_for_the_window_reset_then_succeeds():
    url = f"{BASE}/stores/abc/v2/coupons"
    limit_headers = {"X-Rate-Limit-Requests-Left": "0", "X-Rate-Limit-Requests-Quota": "150",
                     "X-Rate-Limit-Time-Reset-Ms": "1", "X-Rate-Limit-Time-Window-Ms": "30000"}
    responses.get(url, status=429, headers=limit_headers)
    responses.get(url, json=[{"id": 1}], headers=dict(limit_headers, **{"X-Rate-Limit-Requests-Left": "149"}))
    client = _client()
    assert client.get_page(STREAMS_BY_NAME["coupons"], {"limit": 250}).records == [{"id": 1}]
    assert client.rate_limited == 1


def test_429_then_success_against_the_sandbox(workdir, sandbox):
    store = sandbox(coupons=5, customers=5, orders=30, products=5, window_ms=300, faults_at={1: "429", 2: "429-bare"})
    run = run_tap(workdir, store.config(max_workers=1, **FAST))
    assert run.returncode == 0, run.stderr
    assert [r["status"] for r in store.requests[:3]] == [429, 429, 200]
    assert sorted(run.ids("coupons")) == sorted(ids_by_stream(store)["coupons"])


def test_5xx_dropped_connections_and_truncated_json_are_retried(workdir, sandbox):
    store = sandbox(coupons=5, customers=60, orders=60, products=60,
                    faults_at={1: "503", 2: "truncate", 3: "drop", 4: "500", 5: "504", 6: "502"})
    run = run_tap(workdir, store.config(**FAST))
    assert run.returncode == 0, run.stderr
    assert "not valid JSON; retry" in run.stderr and f"the connection to {store.base_url[7:]} failed" in run.stderr
    for name, ids in ids_by_stream(store).items():
        assert sorted(run.ids(name)) == sorted(ids), name


def test_a_store_that_keeps_failing_stops_the_sync_with_one_line(workdir, sandbox):
    store = sandbox(error_rate=1.0)
    run = run_tap(workdir, store.config(max_retries=2, max_workers=1, **FAST))
    assert run.returncode == 1
    assert len(run.error_lines) == 1 and "giving up after 3 tries" in run.error_lines[0]
    assert "Traceback" not in run.stderr


def test_rejected_token_says_so(workdir, sandbox):
    store = sandbox()
    run = run_tap(workdir, store.config(access_token="wrong-token-value", **FAST))
    assert run.returncode == 1
    assert run.error_lines == ["tap-bigcommerce: error: The store rejected the access token (401 Unauthorized); "
                               "check access_token in the config."]


def test_missing_scope_names_the_stream_and_the_scope(workdir, sandbox):
    store = sandbox(tokens={"orders-only": ["store_v2_orders_read_only"]})
    run = run_tap(workdir, store.config(access_token="orders-only", max_workers=1, **FAST))
    assert run.returncode == 1
    assert run.error_lines == ["tap-bigcommerce: error: coupons needs the Marketing read-only scope on the API "
                               "account (the store answered 403 Forbidden)."]


def test_unknown_store_hash_says_so(workdir, sandbox):
    store = sandbox()
    run = run_tap(workdir, store.config(store_hash="nosuchstore", **FAST))
    assert run.returncode == 1
    assert "store hash 'nosuchstore' was not found" in run.error_lines[0]


def test_store_hash_may_be_a_pasted_api_path_or_control_panel_url(workdir, sandbox):
    store = sandbox(coupons=3, customers=1, orders=1, products=1)
    pasted = f"https://api.bigcommerce.com/stores/{store.config()['store_hash']}/v3/"
    control_panel = f"https://store-{store.config()['store_hash']}.mybigcommerce.com/manage/orders"
    for value in (pasted, control_panel):
        run = run_tap(workdir, store.config(store_hash=value, **FAST))
        assert run.returncode == 0, run.stderr
        assert len(run.ids("coupons")) == 3


def test_token_and_client_id_never_printed(workdir, sandbox):
    secret_token, secret_client = "tok-SECRET-4242", "cid-SECRET-1717"
    store = sandbox(tokens={secret_token: ["store_v2_orders_read_only", "store_v2_marketing_read_only"]},
                    faults_at={1: "503", 2: "truncate", 3: "drop"})
    runs = [
        run_tap(workdir, store.config(access_token=secret_token, client_id=secret_client, **FAST)),
        run_tap(workdir, store.config(access_token=secret_token + "x", client_id=secret_client, **FAST)),
        run_tap(workdir, store.config(access_token=secret_token, client_id=secret_client, **FAST), "--discover"),
        run_tap(workdir, dict(store.config(access_token=secret_token, client_id=secret_client), start_date="nope")),
    ]
    assert runs[0].returncode == 1 and re.search(r"(customers|products) needs the \w+ read-only scope", runs[0].stderr)
    for run in runs:
        for text in (run.stdout, run.stderr):
            assert secret_token not in text and secret_client not in text


def test_flow_lets_out_as_many_requests_as_keep_the_decoder_busy():
    flow = _client(max_workers=16).flow
    assert flow.limit() == 2  # nothing measured yet
    flow.took(request_s=0.3, decode_s=0.02)  # a slow store: every worker
    assert flow.limit() == 16
    for _ in range(30):  # a store on loopback, or a busy CPU: a few
        flow.took(request_s=0.01, decode_s=0.02)
    assert flow.limit() == 2
    assert _client(max_workers=1).flow.limit() == 1


def test_decoding_turns_go_first_to_pages_with_more_to_come():
    turns = Turns()
    order = []
    threads = []
    with turns.turn():
        for label, priority in (("a", 1), ("b", 5), ("c", 3), ("d", 5)):
            thread = threading.Thread(target=_take_turn, args=(turns, priority, order, label))
            thread.start()
            threads.append(thread)
            _wait_for(lambda: len(turns._waiting) == len(threads))
    for thread in threads:
        thread.join(5)
    assert order == ["b", "d", "c", "a"]  # highest first; equal priorities in order of arrival


def _take_turn(turns, priority, order, label):
    with turns.turn(priority):
        order.append(label)


def _wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_a_request_waiting_for_the_window_gives_its_flow_place_back():
    clock = [0.0]
    pacer = Pacer(clock=lambda: clock[0])
    pacer.release(pacer.acquire(), {"X-Rate-Limit-Requests-Left": "0", "X-Rate-Limit-Requests-Quota": "5",
                                    "X-Rate-Limit-Time-Reset-Ms": "1000", "X-Rate-Limit-Time-Window-Ms": "1000"})
    flow = Flow(1)  # one request out at a time
    flow.enter()
    waiting = threading.Thread(target=pacer.acquire, args=(flow,))
    waiting.start()
    _wait_for(lambda: pacer.waited)
    # While it waits for the window, another request may take its place in the Flow ...
    second = threading.Thread(target=flow.enter)
    second.start()
    second.join(2)
    assert not second.is_alive()
    # ... and when the window turns it goes anyway, over the limit, so a third must wait.
    clock[0] = 2.0
    waiting.join(5)
    assert not waiting.is_alive()
    third = threading.Thread(target=flow.enter)
    third.start()
    third.join(0.2)
    assert third.is_alive()
    flow.leave()
    flow.leave()
    third.join(2)
    assert not third.is_alive()


@responses.activate
def test_a_full_v3_page_without_meta_is_not_taken_as_the_last():
    url = f"{BASE}/stores/abc/v3/catalog/products"
    responses.get(url, json={"data": [{"id": 1}, {"id": 2}]})
    responses.get(url, json={"data": [{"id": 3}]})
    client = _client()
    assert client.get_page(STREAMS_BY_NAME["products"], {"limit": 2}).has_more is True
    assert client.get_page(STREAMS_BY_NAME["products"], {"limit": 2}).has_more is False


@responses.activate
def test_a_200_html_page_is_named_as_such():
    responses.get(f"{BASE}/stores/abc/v2/coupons", body="<!DOCTYPE html><html>Sign in</html>",
                  content_type="text/html")
    with pytest.raises(ApiError, match=r"giving up after 1 tries: the store sent a 200 with an HTML page instead of JSON"):
        _client(max_retries=0).get_page(STREAMS_BY_NAME["coupons"], {"limit": 250})


class _Loopback:
    """A one-answer HTTP server on loopback that records the requests it gets."""

    def __init__(self, status=200, headers=None, body=b"[]"):
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append({"path": self.path, "headers": dict(self.headers)})
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value.replace("{port}", str(outer.port)))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_redirect_is_not_followed_and_the_token_goes_nowhere_else(workdir):
    elsewhere = _Loopback()
    redirecting = _Loopback(302, {"Location": f"{elsewhere.url}/stores/abc/v2/coupons?token=x"})
    try:
        config = {"client_id": "cid-12345678", "access_token": "tok-SECRET-4242", "store_hash": "abc",
                  "start_date": "2024-01-01", "base_url": redirecting.url, "max_workers": 1, **FAST}
        run = run_tap(workdir, config)
    finally:
        elsewhere.close()
        redirecting.close()
    assert run.returncode == 1
    assert len(run.error_lines) == 1 and "answered 302 Found pointing to " + elsewhere.url + ";" in run.error_lines[0]
    assert "token=x" not in run.stderr and "tok-SECRET-4242" not in run.stderr
    assert redirecting.requests and elsewhere.requests == []


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stalled_server():
    """A listening socket that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock


def test_connection_errors_name_the_host_and_the_cause(workdir, sandbox):
    store = sandbox(coupons=1, customers=1, orders=1, products=1)
    stalled = _stalled_server()
    port = _closed_port()
    cases = [
        (f"http://127.0.0.1:{port}", f"the connection to 127.0.0.1:{port} failed: connection refused"),
        ("http://nonexistent.invalid", "the connection to nonexistent.invalid failed: name not resolved"),
        (store.base_url.replace("http://", "https://"),
         f"the connection to {store.base_url[7:]} failed: TLS handshake failed"),
        (f"http://127.0.0.1:{stalled.getsockname()[1]}",
         f"the connection to 127.0.0.1:{stalled.getsockname()[1]} timed out (no answer within 1 s)"),
    ]
    try:
        for base_url, phrase in cases:
            config = store.config(base_url=base_url, max_retries=0, max_workers=1, request_timeout=1, **FAST)
            run = run_tap(workdir, config)
            assert run.returncode == 1 and len(run.error_lines) == 1, run.stderr
            assert phrase in run.error_lines[0], run.error_lines[0]
    finally:
        stalled.close()


def test_token_pasted_with_a_newline_works_and_a_broken_one_is_refused_unprinted(workdir, sandbox):
    store = sandbox(coupons=3, customers=1, orders=1, products=1)
    pasted = run_tap(workdir, store.config(access_token=store.options.token + "\n", client_id=" cid\t", **FAST))
    assert pasted.returncode == 0, pasted.stderr
    assert len(pasted.ids("coupons")) == 3
    for broken in ("sandbox token", "sandbox-tok\u00e9n", "sandbox-\rtoken"):
        run = run_tap(workdir, store.config(access_token=broken, **FAST))
        assert run.returncode == 1 and run.stdout == ""
        assert run.error_lines == ["tap-bigcommerce: error: access_token holds a space, a control character or a "
                                   "non-ASCII character; paste the token again exactly as BigCommerce shows it."]
        assert "Traceback" not in run.stderr


def test_a_short_placeholder_client_id_garbles_nothing(workdir, sandbox):
    store = sandbox(coupons=3, customers=3, orders=3, products=3)
    run = run_tap(workdir, store.config(client_id="e", **FAST))
    assert run.returncode == 0, run.stderr
    assert "<redacted>" not in run.stderr and "records so far" in run.stderr


def test_secrets_are_blanked_whole_and_in_every_escaped_form():
    from tap_bigcommerce.cli import Redact

    secret = "Ab/c+d=e\"f\\g h"
    redact = Redact([secret, "tok"])
    for form in (secret, repr(secret)[1:-1], "Ab/c+d=e\\\"f\\\\g h", "Ab%2Fc%2Bd%3De%22f%5Cg%20h", "Ab%2Fc%2Bd%3De%22f%5Cg+h"):
        assert redact.scrub(f"before {form} after") == "before <redacted> after", form
    assert redact.scrub("token: tok.") == "token: <redacted>."
    assert redact.scrub("stokes tokens") == "stokes tokens"  # a short secret only where it stands alone


def test_the_redaction_filter_survives_singer_python_being_imported():
    script = (
        "import logging, sys\n"
        "from tap_bigcommerce.cli import Redact, log_to_stderr\n"
        "from tap_bigcommerce import metrics\n"
        "log_to_stderr(Redact(['tok-SECRET-4242']))\n"
        "metrics.load()\n"
        "logging.getLogger('tap_bigcommerce').warning('token tok-SECRET-4242 here')\n"
        "logging.getLogger('tap_bigcommerce').warning('in a traceback', exc_info=ValueError('tok-SECRET-4242'))\n"
    )
    from tap_harness import _env

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env(), timeout=60)
    assert "WARNING token <redacted> here" in done.stderr, done.stderr
    assert "ValueError: <redacted>" in done.stderr and "tok-SECRET-4242" not in done.stderr


def _only(workdir, config, name):
    catalog = json.loads(run_tap(workdir, config, "--discover").stdout)
    for entry in catalog["streams"]:
        entry["metadata"][0]["metadata"]["selected"] = entry["stream"] == name
    return catalog


def test_a_full_page_without_meta_reads_on_against_the_sandbox(workdir, sandbox):
    store = sandbox(coupons=1, customers=1, orders=1, products=120, faults_at={1: "no-meta", 2: "no-meta"})
    config = store.config(max_workers=1, page_size=50, **FAST)
    run = run_tap(workdir, config, catalog=_only(workdir, config, "products"))
    assert run.returncode == 0, run.stderr
    assert sorted(run.ids("products")) == sorted(ids_by_stream(store)["products"])


@pytest.mark.parametrize("fault, phrase", [
    ("html", "the store sent a 200 with an HTML page instead of JSON"),
    ("null-date", "orders: the store returned record 3 with date_modified None, which is not a date-time"),
])
def test_odd_answers_from_the_sandbox_stop_with_one_sentence(workdir, sandbox, fault, phrase):
    store = sandbox(coupons=1, customers=1, orders=30, products=1, faults_at={1: fault})
    config = store.config(max_workers=1, max_retries=0, **FAST)
    run = run_tap(workdir, config, catalog=_only(workdir, config, "orders"))
    assert run.returncode == 1 and len(run.error_lines) == 1, run.stderr
    assert phrase in run.error_lines[0] and "Traceback" not in run.stderr
