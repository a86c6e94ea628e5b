"""Stopping: SIGTERM and Ctrl-C end a run at once and cleanly, and a killed sync resumes cheaply."""
import json
import signal
import subprocess
import time

import pytest

from tap_harness import FAST, STREAM_NAMES, catalog_of, ids_by_stream, run_tap, start_tap

SLACK_S = 0.1  # the signal reaches the tap's main thread this long after os.kill() at most, here


def _read_until_states(process, states):
    """Read stdout until `states` STATE lines; returns the messages read."""
    messages = []
    for line in process.stdout:
        messages.append(json.loads(line))
        if sum(m["type"] == "STATE" for m in messages) == states:
            return messages
    raise AssertionError("the tap ended before writing enough STATE lines")


def _wait_for_requests(store, count, timeout=20):
    deadline = time.monotonic() + timeout
    while len(store.requests) < count:
        assert time.monotonic() < deadline, "the tap sent too few requests"
        time.sleep(0.02)


def _stop(process, signum):
    """Send the signal; returns (when it was sent, the rest of stdout, stderr, seconds to exit)."""
    sent = time.time()
    process.send_signal(signum)
    rest = process.stdout.read()  # through the same buffer the lines before were read with
    process.wait(timeout=30)
    took = time.time() - sent
    return sent, rest, process.stderr.read(), took


def _check_clean_stop(process, rest, err, took, signum):
    name = "SIGTERM" if signum == signal.SIGTERM else "SIGINT"
    assert process.returncode == 128 + signum
    assert took < 2.0, f"the tap took {took:.1f} s to stop"
    errors = [line for line in err.splitlines() if line.startswith("tap-bigcommerce: error:")]
    assert len(errors) == 1 and name in errors[0], err
    assert "Traceback" not in err
    assert rest == "" or rest.endswith("\n"), "the last line on stdout is cut"
    return [json.loads(line) for line in rest.splitlines()]


def _requests_after(store, moment):
    time.sleep(0.3)  # anything the tap sent late has been answered and logged by now
    return [r for r in store.requests if r["time"] > moment + SLACK_S]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_sync_stops_at_once_and_the_last_state_covers_everything(workdir, sandbox, signum):
    store = sandbox(coupons=300, customers=600, orders=3000, products=600, latency_ms=20)
    present = ids_by_stream(store)
    config = store.config(max_workers=4, page_size=50, **FAST)
    catalog = catalog_of(workdir, config)
    process = start_tap(workdir, config, stderr=subprocess.PIPE, catalog=catalog)
    messages = _read_until_states(process, 20)
    sent, rest, err, took = _stop(process, signum)
    messages += _check_clean_stop(process, rest, err, took, signum)
    assert _requests_after(store, sent) == []
    last = max(i for i, m in enumerate(messages) if m["type"] == "STATE")
    kept = messages[:last + 1]  # what a target commits
    resumed = run_tap(workdir, config, state=kept[-1]["value"], catalog=catalog)
    assert resumed.returncode == 0, resumed.stderr
    for name in STREAM_NAMES:
        before = {m["record"]["id"] for m in kept if m["type"] == "RECORD" and m["stream"] == name}
        assert present[name] <= before | set(resumed.ids(name)), name


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_waiting_for_the_rate_limit_window(workdir, sandbox, signum):
    # Five requests spend the quota; the next would wait 30 s for the window to turn.
    store = sandbox(coupons=500, customers=500, orders=2000, products=500, quota=5, window_ms=30000)
    process = start_tap(workdir, store.config(max_workers=4, page_size=50, **FAST), stderr=subprocess.PIPE)
    _wait_for_requests(store, 5)
    time.sleep(0.5)
    sent, rest, err, took = _stop(process, signum)
    _check_clean_stop(process, rest, err, took, signum)
    assert _requests_after(store, sent) == []


def test_sigterm_while_the_store_stalls(workdir, sandbox):
    store = sandbox(coupons=5, customers=5, orders=5, products=5, latency_ms=60000)
    process = start_tap(workdir, store.config(request_timeout=300, **FAST), stderr=subprocess.PIPE)
    time.sleep(1.5)  # every request is in flight, and none will be answered for a minute
    _, rest, err, took = _stop(process, signal.SIGTERM)
    _check_clean_stop(process, rest, err, took, signal.SIGTERM)


def test_sigterm_while_waiting_to_retry(workdir, sandbox):
    store = sandbox(coupons=5, customers=5, orders=5, products=5, error_rate=1.0)
    config = store.config(retry_base_delay=60, max_retries=5, max_workers=1)
    process = start_tap(workdir, config, stderr=subprocess.PIPE)
    _wait_for_requests(store, 1)
    time.sleep(0.5)  # the tap now waits up to a minute before its first retry
    sent, rest, err, took = _stop(process, signal.SIGTERM)
    _check_clean_stop(process, rest, err, took, signal.SIGTERM)
    assert _requests_after(store, sent) == []


def test_a_killed_sync_resumes_its_partitions_and_rereads_about_a_page_each(workdir, sandbox):
    page_size = 50
    store = sandbox(coupons=1, customers=1, orders=6000, products=1, latency_ms=15)
    present = ids_by_stream(store)["orders"]
    config = store.config(max_workers=8, page_size=page_size, **FAST)
    catalog = catalog_of(workdir, config, ["orders"])
    process = start_tap(workdir, config, catalog=catalog)
    messages = _read_until_states(process, 60)
    process.kill()
    process.wait()
    delivered = {m["record"]["id"] for m in messages if m["type"] == "RECORD" and m["stream"] == "orders"}
    state = [m["value"] for m in messages if m["type"] == "STATE"][-1]
    ranges = state["bookmarks"]["orders"]["ranges"]
    assert len(ranges) > 1 and ranges[-1][1] is None
    assert all(lower >= state["bookmarks"]["orders"]["date_modified"] for lower, _ in ranges)
    resumed = run_tap(workdir, config, state=state, catalog=catalog)
    assert resumed.returncode == 0, resumed.stderr
    again = set(resumed.ids("orders"))
    assert present <= delivered | again
    reread = delivered & again
    assert len(reread) <= len(ranges) * page_size, f"{len(reread)} records sent again for {len(ranges)} ranges"
    assert len(reread) < len(delivered) / 2
    final = resumed.last_state["bookmarks"]["orders"]
    assert "ranges" not in final
    assert final["date_modified"] == max(r["date_modified"] for r in resumed.records("orders"))


def test_currently_syncing_from_a_stitch_style_state_is_not_carried_on(workdir, sandbox):
    store = sandbox(coupons=3, customers=3, orders=3, products=3)
    state = {"currently_syncing": "orders", "bookmarks": {"orders": {"date_modified": "2020-01-01T00:00:00Z"}}}
    run = run_tap(workdir, store.config(**FAST), state=state)
    assert run.returncode == 0, run.stderr
    assert all("currently_syncing" not in m["value"] for m in run.messages if m["type"] == "STATE")
    assert sorted(run.ids("orders")) == sorted(ids_by_stream(store)["orders"])
