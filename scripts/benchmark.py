"""Benchmark tap-bigcommerce against the in-process sandbox store (issue 4).

Four scenarios, each against a Sandbox started here, with the tap run as a subprocess whose
stdout is counted by a reader thread and whose CPU time and peak RSS come from os.wait4 in a small launcher process:

1. rate-bound: the full store, 300 ms latency, quota 50 per 3 s window. Wall time against the
   quota bound (ceil(N / quota) - 1) x window, where N is the fewest requests that read the store:
   ceil(records / 250) per v3 list, records // 250 + 1 per list that does not say where it ends
   (v2 orders and coupons, refunds), see pages_needed().
   Run again with order line items, shipping consignments and refunds selected (issue 12).
2. cpu-bound: the same store, no latency, no quota. Records per second and CPU seconds per 10,000
   records for this tap, and for tap-bigcommerce 1.1.3 from PyPI (its own virtualenv under
   .venvs/, pointed at the sandbox by scripts/bench_shim/) on the streams both read.
3. memory: peak RSS of an orders-only sync of 10,000 orders against one of 100,000, and of the
   same with line items, shipping consignments and refunds.
4. the order family (issue 12): requests by kind, records and CPU for a full sync of 5,000 orders
   with every order stream, against tap-bigcommerce 1.1.3's orders on the same store.

Then one profiled run of this tap (per-thread cProfile on thread CPU time), summarised by where
the CPU goes. Usage:

    .venv/bin/python scripts/benchmark.py [--quick] [--sequential] [--only rate,cpu,memory,family,profile]
"""
import argparse
import contextlib
import cProfile
import json
import math
import os
import pstats
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TAP = ROOT / ".venv" / "bin" / "tap-bigcommerce"
SANDBOX = ROOT / ".venv" / "bin" / "tap-bigcommerce-sandbox"
TAP_PYTHON = ROOT / ".venv" / "bin" / "python"
OLD_VERSION = "1.1.3"
OLD_VENV = ROOT / ".venvs" / f"tap-bigcommerce-{OLD_VERSION}"
OLD_PYTHON = OLD_VENV / "bin" / "python"
SHIM = ROOT / "scripts" / "bench_shim" / "run_tap_bigcommerce_1_1_3.py"
PAGE = 250
RECORD_MARKERS = (b'"type":"RECORD"', b'"type": "RECORD"')  # this tap (orjson), 1.1.3 (simplejson)
NO_QUOTA = 10**9
ONE_SECOND = timedelta(seconds=1)
STREAM_NAMES = ("coupons", "customers", "orders", "products")  # the scenarios that compare rounds
CHILDREN = ("order_line_items", "order_shipping_addresses")  # taken from the orders pages themselves
# The rest of the store for the all-streams run: sizes of a mid-sized shop (sandbox options).
REST_OF_STORE = {"brands": 300, "customer_groups": 40, "channels": 12, "gift_certificates": 3_000, "currencies": 8,
                 "promotions": 400, "promotion_codes": 6_000, "category_trees": 3, "categories": 1_500,
                 "subscribers": 8_000, "customer_attributes": 20, "customer_attribute_values": 6_000, "price_lists": 6,
                 "price_list_records": 12_000, "metafields": 2_000}
FAMILY = ("orders",) + CHILDREN + ("order_coupons", "refunds")


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is."""

    store: dict
    latency_ms: int
    quota: int
    window_ms: int
    old_orders: int  # orders the 1.1.3 run reads (it makes 3 more requests per order)
    memory_orders: tuple


FULL = Sizes({"orders": 50_000, "customers": 20_000, "products": 10_000, "coupons": 2_000},
             latency_ms=300, quota=50, window_ms=3000, old_orders=5_000, memory_orders=(10_000, 100_000))
QUICK = Sizes({"orders": 2_000, "customers": 800, "products": 400, "coupons": 100},
              latency_ms=100, quota=5, window_ms=1000, old_orders=300, memory_orders=(2_000, 10_000))


@dataclass
class ChildRun:
    """What one tap process did."""

    wall_s: float
    cpu_s: float
    maxrss_mb: float
    records: int
    lines: int
    returncode: int
    stderr_tail: str

    def check(self, label, expected=None):
        """Raise if the run failed or wrote a different number of records than expected."""
        if self.returncode != 0:
            raise SystemExit(f"{label}: exit code {self.returncode}\n{self.stderr_tail}")
        if expected is not None and self.records != expected:
            raise SystemExit(f"{label}: wrote {self.records} records, expected {expected}\n{self.stderr_tail}")
        return self


class _Counter(threading.Thread):
    """Reads a child's stdout in large chunks, counting lines and RECORD messages."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.lines, self.records = stream, 0, 0

    def run(self):
        carry = b""
        while True:
            chunk = self.stream.read(1 << 20)
            if not chunk:
                return
            # A line is never split for counting: keep the unfinished last line for the next chunk.
            cut = chunk.rfind(b"\n") + 1
            data, carry = carry + chunk[:cut], chunk[cut:] if cut else carry + chunk
            if not cut:
                continue
            self.lines += data.count(b"\n")
            self.records += sum(data.count(marker) for marker in RECORD_MARKERS)


# Linux carries a process's peak RSS across fork and exec, so a tap spawned straight from this
# process (which holds the sandbox store) would report this process's peak as its own. A small
# launcher process forks the tap instead and reports the tap's rusage from wait4.
LAUNCHER = """
import json, os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({"cpu_s": usage.ru_utime + usage.ru_stime, "maxrss_kb": usage.ru_maxrss}, out)
code = os.waitstatus_to_exitcode(status)
os._exit(code if code >= 0 else 128 - code)
"""


def run_child(cmd, timeout_s, workdir, label):
    """Run one tap process; stdout is counted and dropped, stderr kept in a file."""
    stderr_path = Path(workdir) / f"{label}.stderr"
    usage_path = Path(workdir) / f"{label}.rusage.json"
    started = time.perf_counter()
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, str(usage_path)] + [str(part) for part in cmd],
                                stdout=subprocess.PIPE, stderr=stderr, cwd=workdir, start_new_session=True)
    counter = _Counter(proc.stdout)
    counter.start()
    timed_out = threading.Event()

    def kill():
        timed_out.set()
        os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout_s, kill)
    timer.start()
    try:
        proc.wait()
    finally:
        timer.cancel()
    wall = time.perf_counter() - started
    counter.join(30)
    proc.stdout.close()
    tail = stderr_path.read_bytes()[-3000:].decode("utf-8", "replace")
    if timed_out.is_set():
        raise SystemExit(f"{label}: killed after the {timeout_s} s timeout\n{tail}")
    usage = json.loads(usage_path.read_text(encoding="utf-8"))
    return ChildRun(wall, usage["cpu_s"], usage["maxrss_kb"] / 1024.0, counter.records,
                    counter.lines, proc.returncode, tail)


def write_json(workdir, name, value):
    """Write a JSON file into the work folder and return its path."""
    path = Path(workdir) / name
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def select(catalog, streams):
    """The catalog with exactly these streams selected (root metadata)."""
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = entry["tap_stream_id"] in streams
    return catalog


def our_catalog(workdir, config_path, streams):
    """This tap's discovered catalog with only `streams` selected."""
    out = subprocess.run([str(TAP), "--config", str(config_path), "--discover"], capture_output=True,
                         check=True, cwd=workdir, timeout=60).stdout
    name = "-".join(streams) if len(streams) <= 7 else f"{len(streams)}-streams"
    return write_json(workdir, f"catalog-{name}.json", select(json.loads(out), streams))


def old_catalog(workdir, config_path, streams):
    """tap-bigcommerce 1.1.3's discovered catalog (through the shim) with only `streams` selected."""
    out = subprocess.run([str(OLD_PYTHON), str(SHIM), "--config", str(config_path), "--discover"],
                         capture_output=True, check=True, cwd=workdir, timeout=60).stdout
    return write_json(workdir, f"old-catalog-{'-'.join(streams)}.json", select(json.loads(out), streams))


def ensure_old_tap():
    """Create .venvs/tap-bigcommerce-1.1.3 with the PyPI package if it is not there yet."""
    check = f"import importlib.metadata as m; assert m.version('tap-bigcommerce') == '{OLD_VERSION}'"
    # Run from / so that this repository's own tap_bigcommerce package does not shadow the old one.
    if OLD_PYTHON.exists() and subprocess.run([str(OLD_PYTHON), "-c", check], capture_output=True,
                                              cwd="/").returncode == 0:
        return
    print(f"creating {OLD_VENV.relative_to(ROOT)} with tap-bigcommerce=={OLD_VERSION} from PyPI ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(OLD_VENV)], check=True)
    subprocess.run([str(OLD_PYTHON), "-m", "pip", "install", "--quiet", f"tap-bigcommerce=={OLD_VERSION}"],
                   check=True)


def default_workers():
    """The tap's default max_workers."""
    from tap_bigcommerce.config import Config

    return Config.max_workers


def all_streams():
    """Every stream the tap has."""
    from tap_bigcommerce.streams import STREAMS

    return tuple(stream.name for stream in STREAMS)


NO_TOTAL = ("orders", "coupons")  # v2 lists: no total and no next link in their answers


def pages_needed(store):
    """N: the fewest requests that read the store, one 250-record page at a time.

    A v3 list's first page gives its total, so ceil(records / 250) pages read it. A v2 list
    (orders, coupons) says neither its total nor whether another page follows: its end is a page
    that is not full, so when its records fill their last page exactly (50,000 orders, 2,000
    coupons) one more, empty, answer is the only way to know it has ended (asking /count first
    is a request too): records // 250 + 1, as for refunds."""
    return sum(count // PAGE + 1 if name in NO_TOTAL else max(math.ceil(count / PAGE), 1)
               for name, count in store.items())


def cpu_ratio(rows, label, old):
    """This tap's gross CPU per record over the old tap's, for one row label."""
    found = {tap: cpu_per_10k(run, count) for tap, row_label, count, run in rows if row_label == label}
    return found["this tap"] / found[old]


def cpu_per_10k(run, records):
    """CPU seconds per 10,000 records."""
    return run.cpu_s / records * 10_000 if records else float("nan")


# ---- scenarios ---------------------------------------------------------------------------------

@contextlib.contextmanager
def sandbox_process(workdir, label, **options):
    """A sandbox store in its own process: yields (config dict, request log path).

    The wall-time and memory scenarios use it so that the store's threads and this process's
    stdout counter do not share one interpreter lock, which slowed the counter enough to hold
    the tap back on full pipes.
    """
    ready, log, config = (Path(workdir) / f"{label}.{name}" for name in ("ready", "log.jsonl", "config.json"))
    for path in (ready, log):
        path.unlink(missing_ok=True)
    args = [str(SANDBOX), "--seed", "1", "--prewarm", "--write-config", str(config), "--ready-file", str(ready), "--log", str(log)]
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the sandbox did not start: {proc.stderr.read().decode(errors='replace')}")
            time.sleep(0.1)
        yield json.loads(config.read_text(encoding="utf-8")), log
    finally:
        proc.terminate()
        proc.wait(30)


def rate_bound(sizes, workdir, workers, timeout_s, streams=STREAM_NAMES, rest=None):
    """Scenario 1: full store, latency and a small quota; returns a result dict.

    With the order family's children and refunds selected, N also counts the refunds pages the
    store's refunds fill (and the page that ends the list). With every stream (`rest`: the other
    lists' sizes), N also counts every answered request to the other lists: how many each takes
    (second reads of page-numbered lists, coupons per order, a codes list per promotion, a window
    per price list) is the store's to decide."""
    total = sum(sizes.store.values()) if streams == STREAM_NAMES else None
    label = f"rate-{workers}-{len(streams)}"
    with sandbox_process(workdir, label, latency_ms=sizes.latency_ms, quota=sizes.quota,
                         window_ms=sizes.window_ms, **sizes.store, **(rest or {})) as (config, log_path):
        config = write_json(workdir, f"{label}-config.json", dict(config, max_workers=workers))
        catalog = our_catalog(workdir, config, streams)
        run = run_child([TAP, "--config", config, "--catalog", catalog], timeout_s, workdir, label).check(
            f"rate-bound, max_workers={workers}, {len(streams)} streams", total)
        log = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines()]
    kinds = request_kinds(log)
    # Refunds: one page per 250, and the short (or empty) page that ends the list; the pages asked
    # for past the end (the list does not say where it ends) are the tap's cost, not the store's.
    refund_pages = sizes.store["orders"] // 10 // PAGE + 1 if "refunds" in streams else 0
    n = pages_needed(sizes.store) + refund_pages + kinds.get("products per order", 0)
    if rest:
        mains = re.compile(r"/v2/(orders|coupons)\Z|/v3/(customers|catalog/products|orders/payment_actions/refunds)\Z")
        n = pages_needed(sizes.store) + refund_pages + sum(
            1 for entry in log if entry["status"] and entry["status"] < 300 and not mains.search(entry["path"]))
    bound = (math.ceil(n / sizes.quota) - 1) * sizes.window_ms / 1000.0
    times = [entry["time"] for entry in log]
    return {
        "streams": len(streams), "max_workers": workers, "records": run.records, "cpu_s": run.cpu_s, "wall_s": run.wall_s,
        "requests": len(log), "n": n, "r429": sum(1 for entry in log if entry["status"] == 429),
        "bound_s": bound, "ratio": run.wall_s / bound if bound else float("nan"),
        "first_to_last_request_s": (max(times) - min(times)) if times else 0.0,
        "sequential_estimate_s": n * sizes.latency_ms / 1000.0,
    }


def cpu_bound(sizes, workdir, with_old, timeout_s):
    """Scenario 2: no latency, no quota; this tap (all streams and per stream) and 1.1.3."""
    from tap_bigcommerce.sandbox import Sandbox, SandboxOptions

    rows = []
    opts = SandboxOptions(seed=1, quota=NO_QUOTA, window_ms=1000, **sizes.store)
    with Sandbox(opts) as sandbox:
        config = sandbox.config()
        config_path = write_json(workdir, "cpu-config.json", config)
        total = sum(sizes.store.values())
        startup = {"this tap": run_child([TAP, "--config", config_path, "--discover"], timeout_s, workdir,
                                         "startup").check("this tap --discover").cpu_s}
        catalog = our_catalog(workdir, config_path, STREAM_NAMES)
        run = run_child([TAP, "--config", config_path, "--catalog", catalog], timeout_s, workdir,
                        "cpu-all").check("cpu all", total)
        rows.append(("this tap", "all four streams", total, run))
        for stream in ("products", "coupons", "orders"):
            catalog = our_catalog(workdir, config_path, [stream])
            count = sizes.store[stream]
            run = run_child([TAP, "--config", config_path, "--catalog", catalog], timeout_s, workdir,
                            f"cpu-{stream}").check(f"cpu {stream}", count)
            rows.append(("this tap", stream, count, run))
        if not with_old:
            return rows, startup
        # Orders: 1.1.3 fetches 3 sub-resources per order, so both taps read only the newest-modified
        # `old_orders` orders. 1.1.3 emits date_modified > start_date, this tap >= start_date.
        modified = sorted(sandbox_dates(sandbox, "orders"))
        cut = modified[-sizes.old_orders - 1]
        sample = sum(1 for moment in modified if moment > cut)
        label = f"orders, newest {sample}"
        old_config = write_json(workdir, "cpu-config-old-orders.json", dict(config, start_date=iso(cut)))
        slice_config = write_json(workdir, "cpu-config-orders.json", dict(config, start_date=iso(cut + ONE_SECOND)))
        catalog = our_catalog(workdir, slice_config, ["orders"])
        run = run_child([TAP, "--config", slice_config, "--catalog", catalog], timeout_s, workdir,
                        "cpu-orders-slice").check("cpu orders slice", sample)
        rows.append(("this tap", label, sample, run))
        startup[f"tap-bigcommerce {OLD_VERSION}"] = run_child(
            [OLD_PYTHON, SHIM, "--config", config_path, "--discover"], timeout_s, workdir, "old-startup").check(
            f"{OLD_VERSION} --discover").cpu_s
        for stream, count, cfg in (("products", sizes.store["products"], config_path),
                                   ("coupons", sizes.store["coupons"], config_path),
                                   ("orders", sample, old_config)):
            catalog = old_catalog(workdir, cfg, [stream])
            run = run_child([OLD_PYTHON, SHIM, "--config", cfg, "--catalog", catalog], timeout_s * 3, workdir,
                            f"old-{stream}").check(f"1.1.3 {stream}")
            rows.append((f"tap-bigcommerce {OLD_VERSION}", label if stream == "orders" else stream, count, run))
    return rows, startup


REQUEST_KINDS = (  # (kind, path pattern) for the order family's requests in the sandbox's log
    ("orders pages", re.compile(r"/v2/orders\Z")),
    ("products per order", re.compile(r"/v2/orders/\d+/products\Z")),
    ("coupons per order", re.compile(r"/v2/orders/\d+/coupons\Z")),
    ("shipping addresses per order", re.compile(r"/v2/orders/\d+/shipping_?addresses\Z")),
    ("consignments per order", re.compile(r"/v2/orders/\d+/consignments\Z")),
    ("fees per order", re.compile(r"/v2/orders/\d+/fees\Z")),
    ("refunds pages", re.compile(r"/v3/orders/payment_actions/refunds\Z")),
)


def request_kinds(log):
    """{kind: answered requests (2xx)} over a request log (every other path counts as "other")."""
    counts = {}
    for entry in log:
        if not entry["status"] or entry["status"] >= 300:
            continue
        kind = next((name for name, pattern in REQUEST_KINDS if pattern.search(entry["path"])), "other")
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def family(sizes, workdir, with_old, timeout_s):
    """Scenario 4: a full sync of `old_orders` orders with every order stream, request by request,
    against tap-bigcommerce 1.1.3's orders on the same store; returns [(tap, ChildRun, kinds)]."""
    rows = []
    store = {"orders": sizes.old_orders, "customers": 0, "products": 0, "coupons": 0}
    taps = [("this tap", [TAP], our_catalog, FAMILY, timeout_s)]
    if with_old:
        taps.append((f"tap-bigcommerce {OLD_VERSION}", [OLD_PYTHON, SHIM], old_catalog, ("orders",), timeout_s * 3))
    for tap, argv, make_catalog, streams, limit in taps:
        label = "family-" + tap.split()[-1]
        with sandbox_process(workdir, label, quota=NO_QUOTA, window_ms=1000, **store) as (config, log_path):
            config_path = write_json(workdir, f"{label}-config.json", config)
            catalog = make_catalog(workdir, config_path, streams)
            run = run_child(argv + ["--config", config_path, "--catalog", catalog], limit, workdir, label).check(tap)
            log = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines()]
        rows.append((tap, run, request_kinds(log)))
    return rows


def iso(moment):
    """An aware datetime as 2024-01-31T00:00:00Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def sandbox_dates(sandbox, stream):
    """Every record's date_modified in the sandbox store, as aware datetimes."""
    from email.utils import parsedate_to_datetime

    return [parsedate_to_datetime(record["date_modified"]) for record in sandbox.records(stream)]


def memory(sizes, workdir, timeout_s, streams=("orders",)):
    """Scenario 3: peak RSS of a sync of these order streams at two store sizes."""
    rows = []
    for count in sizes.memory_orders:
        label = f"mem-{count}-{len(streams)}"
        with sandbox_process(workdir, label, quota=NO_QUOTA, window_ms=1000, orders=count, customers=0,
                             products=0, coupons=0) as (config, _):
            config = write_json(workdir, f"{label}-config.json", config)
            catalog = our_catalog(workdir, config, streams)
            run = run_child([TAP, "--config", config, "--catalog", catalog], timeout_s, workdir,
                            label).check(f"memory {count}", count if streams == ("orders",) else None)
        rows.append((count, run))
    return rows


# ---- profile -----------------------------------------------------------------------------------

CATEGORIES = (  # (category, test on (file, function)); the first that matches wins
    ("JSON decode (orjson.loads)", lambda f, n: "orjson.loads" in n),
    ("JSON encode (orjson.dumps)", lambda f, n: "orjson.dumps" in n),
    ("transform", lambda f, n: f.endswith("tap_bigcommerce/transform.py") and "parse_datetime" not in n),
    ("write (output.py, file writes)", lambda f, n: f.endswith("tap_bigcommerce/output.py") or "write' of" in n
     or "flush' of" in n or "bytes.join" in n),
    ("date parsing (parse_datetime, mostly sync.py's checks)", lambda f, n: "parse_datetime" in n
     or "fromisoformat" in n or "astimezone" in n or "strftime" in n or "_parseaddr" in f
     or f.endswith("email/utils.py")),
    ("sync loop (sync.py)", lambda f, n: f.endswith("tap_bigcommerce/sync.py")),
    ("pacer and client (client.py)", lambda f, n: f.endswith("tap_bigcommerce/client.py")),
    ("HTTP (requests, urllib3, http.client, socket)", lambda f, n: any(
        part in f for part in ("/requests/", "/urllib3/", "/http/", "socket.py", "/email/", "ssl.py",
                               "/urllib/", "/idna/", "/charset_normalizer/", "/encodings/"))
     or "socket" in n or "recv_into" in n or "readinto" in n),
    ("logging and metrics", lambda f, n: "/logging/" in f or "/singer/" in f or "simplejson" in f),
    ("threads and queue", lambda f, n: any(part in f for part in ("threading.py", "queue.py", "/concurrent/"))
     or "acquire" in n or "lock" in n.lower()),
)


def profile_child(out_path, argv):
    """In the child: run the tap's main() with a cProfile (thread CPU clock) in every thread."""
    profiles = []
    lock = threading.Lock()

    def start_thread_profile(*_):
        profile = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append(profile)
        sys.setprofile(None)
        profile.enable()

    threading.setprofile(start_thread_profile)
    from tap_bigcommerce import cli

    main_profile = cProfile.Profile(time.thread_time)
    profiles.append(main_profile)
    main_profile.enable()
    code = cli.main(argv)
    main_profile.disable()
    sys.stdout.flush()
    stats = None
    for profile in profiles:
        profile.disable()
        try:
            part = pstats.Stats(profile)
        except TypeError:  # a thread that never ran a profiled call
            continue
        stats = part if stats is None else stats.add(part) or stats
    stats.dump_stats(out_path)
    return code


def _category(filename, name):
    for category, test in CATEGORIES:
        if test(filename, name):
            return category
    return "other"


def categorise(stats):
    """(category -> seconds of own CPU time, total seconds, top functions).

    A builtin (len, isinstance, dict methods ...) other than orjson's is charged to the category
    of the function that called it, in proportion to the time cProfile saw per caller.
    """
    totals, whole, top = {}, 0.0, []
    for (filename, line, name), (_, _, tottime, _, callers) in stats.stats.items():
        label = name if filename == "~" else f"{filename}:{line}({name})"
        whole += tottime
        top.append((tottime, label))
        own = _category(filename, name)
        if filename == "~" and own == "other" and callers:
            for (caller_file, _, caller_name), caller_times in callers.items():
                share = caller_times[2]
                category = _category(caller_file, caller_name)
                totals[category] = totals.get(category, 0.0) + share
            continue
        totals[own] = totals.get(own, 0.0) + tottime
    top.sort(reverse=True)
    return totals, whole, top[:15]


def profile(sizes, workdir, timeout_s):
    """One profiled sync of all four streams (no latency, no quota); returns the summary text."""
    from tap_bigcommerce.sandbox import Sandbox, SandboxOptions

    out = Path(workdir) / "tap.prof"
    opts = SandboxOptions(seed=1, quota=NO_QUOTA, window_ms=1000, **sizes.store)
    with Sandbox(opts) as sandbox:
        config = write_json(workdir, "profile-config.json", sandbox.config())
        catalog = our_catalog(workdir, config, STREAM_NAMES)
        run = run_child([TAP_PYTHON, Path(__file__).resolve(), "--profile-child", out, "--config", config,
                         "--catalog", catalog],
                        timeout_s, workdir, "profile").check("profile", sum(sizes.store.values()))
    stats = pstats.Stats(str(out))
    totals, whole, top = categorise(stats)
    lines = [f"profiled run: {run.records} records, {run.cpu_s:.2f} s process CPU "
             f"({whole:.2f} s of thread CPU seen by cProfile, which adds its own overhead)", ""]
    lines.append(f"{'where':48} {'CPU s':>7} {'share':>6}")
    for category, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        lines.append(f"{category:48} {seconds:7.2f} {seconds / whole:6.1%}")
    lines += ["", "top functions by own CPU time:"]
    root = str(ROOT) + "/"
    for seconds, label in top:
        label = label.replace(root, "").split("site-packages/")[-1].split("lib/python3.11/")[-1]
        lines.append(f"  {seconds:7.2f}  {label}")
    return "\n".join(lines)


# ---- main --------------------------------------------------------------------------------------

DELETION_STREAMS = ("orders", "products", "customers", "coupons")


def deletions(sizes, workdir, timeout_s):
    """Scenario 6: detect_deletions on the full store. A first sync, a second with nothing deleted,
    a third after deleting 10 random records of each stream; the requests each spent finding
    deletions (from the store's log), whether the ids reported are exactly those deleted, and the
    state's size. Returns (rows, state sizes)."""
    import random

    from tap_bigcommerce.sandbox import Sandbox, SandboxOptions

    rows, state, sizes_kb = [], None, {}
    with Sandbox(SandboxOptions(seed=1, quota=10**6, **sizes.store)) as store:
        config = write_json(workdir, "deletions-config.json", dict(store.config(), detect_deletions=True))
        catalog = our_catalog(workdir, config, DELETION_STREAMS)
        for label in ("first sync", "nothing deleted", "10 deleted per stream"):
            gone = {}
            if label.startswith("10"):
                rng = random.Random(3)
                for stream in DELETION_STREAMS:
                    gone[stream] = set(rng.sample([r["id"] for r in store.records(stream)], 10))
                    store.delete(stream, ids=gone[stream])
            before = len(store.requests)
            reported, state = _deletion_run(workdir, config, catalog, state, timeout_s)
            spent = _detection_requests(store.requests[before:])
            rows.append((label, spent, {s: reported.get(s, set()) == gone.get(s, set()) for s in DELETION_STREAMS}))
            sizes_kb[label] = len(json.dumps(state)) / 1024
    return rows, sizes_kb


def _deletion_run(workdir, config, catalog, state, timeout_s):
    """One sync; returns ({stream: ids reported deleted}, the last state)."""
    out = Path(workdir) / "deletions.out"
    cmd = [str(TAP), "--config", config, "--catalog", catalog]
    if state is not None:
        cmd += ["--state", write_json(workdir, "deletions-state.json", state)]
    with open(out, "wb") as sink:
        subprocess.run(cmd, stdout=sink, stderr=subprocess.DEVNULL, check=True, timeout=timeout_s)
    reported, last = {}, None
    with open(out, "rb") as lines:
        for line in lines:
            if b"_sdc_deleted_at" in line and line.startswith(b'{"type":"RECORD"'):
                message = json.loads(line)
                reported.setdefault(message["stream"], set()).add(message["record"]["id"])
            elif line.startswith(b'{"type":"STATE"'):
                last = line
    return reported, json.loads(last)["value"]


def _detection_requests(log):
    """{stream: requests} that counted, listed an id range or probed ids (not the reads)."""
    found = {}
    for entry in log:
        params = dict(entry["params"])
        if entry["path"].endswith("/count") or params.get("limit") == "1" or \
                {"id:in", "max_id", "id:max"} & set(params):
            stream = next(name for name, tail in (("orders", "/v2/orders"), ("products", "/catalog/products"),
                                                  ("customers", "/v3/customers"), ("coupons", "/coupons")) if tail in entry["path"])
            found[stream] = found.get(stream, 0) + 1
    return found


def state_size_for_a_million():
    """KB of the delivered-id ranges of a million ids with 3,000 gaps (deleted records)."""
    import random

    from tap_bigcommerce.deletions import IdSet

    ids = IdSet([[1, 1_000_000]])
    for rid in random.Random(1).sample(range(2, 1_000_000), 3_000):
        ids.remove(rid)
    return len(json.dumps(ids.to_state())) / 1024, len(ids.to_state())


def main(argv=None):
    """Run the scenarios and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke check under a minute")
    parser.add_argument("--sequential", action="store_true",
                        help="also run the rate-bound scenario with max_workers=1 (about N x latency)")
    parser.add_argument("--no-old", action="store_true", help=f"skip tap-bigcommerce {OLD_VERSION}")
    parser.add_argument("--only", default="rate,cpu,memory,family,profile,deletions", help="comma-separated scenarios")
    parser.add_argument("--profile-child", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.profile_child:
        return profile_child(args.profile_child, rest)

    sizes = QUICK if args.quick else FULL
    only = set(args.only.split(","))
    timeout = 60 if args.quick else 300
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; store {sizes.store}", flush=True)
    with tempfile.TemporaryDirectory(prefix="tap-bigcommerce-bench-") as workdir:
        if "rate" in only:
            results = [rate_bound(sizes, workdir, default_workers(), timeout)]
            if args.sequential:
                results.append(rate_bound(sizes, workdir, 1, timeout * 2))
            results.append(rate_bound(sizes, workdir, default_workers(), timeout * 2,
                                      STREAM_NAMES + CHILDREN + ("refunds",)))
            # Every stream: order coupons cost a request per order with a coupon, so the four
            # lists are a fifth of the size here, and the rest of the store is REST_OF_STORE.
            every = all_streams()
            scale = 1 if sizes is FULL else 10
            results.append(rate_bound(
                replace(sizes, store={name: count // 5 for name, count in sizes.store.items()}), workdir,
                default_workers(), timeout * 2, every, {name: count // scale for name, count in REST_OF_STORE.items()}))
            print(f"\n1. rate-bound: latency {sizes.latency_ms} ms, quota {sizes.quota} per "
                  f"{sizes.window_ms / 1000:g} s (streams: 4 = the four lists; 7 = with line items, "
                  f"shipping consignments and refunds; {len(every)} = every stream, the four lists a fifth "
                  "the size and the rest of the store sized as REST_OF_STORE)")
            print(f"{'streams':>7} {'max_workers':>11} {'records':>8} {'wall s':>7} {'tap CPU s':>9} {'requests':>8} "
                  f"{'N':>5} {'429s':>5} {'bound s':>7} {'ratio':>6} {'requests end s':>14}")
            for r in results:
                print(f"{r['streams']:>7} {r['max_workers']:>11} {r['records']:>8} {r['wall_s']:7.1f} {r['cpu_s']:9.1f} "
                      f"{r['requests']:>8} {r['n']:>5} {r['r429']:>5} {r['bound_s']:7.1f} {r['ratio']:6.2f} "
                      f"{r['first_to_last_request_s']:14.1f}")
            print(f"(target: ratio <= 1.15, no 429; one page at a time would take about "
                  f"{results[0]['sequential_estimate_s']:.0f} s)", flush=True)
        if "cpu" in only:
            with_old = not args.no_old
            if with_old:
                ensure_old_tap()
            rows, startup = cpu_bound(sizes, workdir, with_old, timeout)
            print("\n2. cpu-bound: no latency, no quota (CPU = the tap process's user + system time;")
            print("   'net' subtracts the CPU of a --discover run, i.e. interpreter start and imports: "
                  + ", ".join(f"{tap} {seconds:.2f} s" for tap, seconds in startup.items()) + ")")
            print(f"{'tap':22} {'streams':20} {'records':>7} {'written':>7} {'wall s':>6} {'rec/s':>6} "
                  f"{'CPU s':>6} {'CPU s/10k':>9} {'net /10k':>8}")
            per = {}
            for tap, label, count, run in rows:
                per[(tap, label)] = (run.cpu_s - startup[tap]) / count * 10_000
                print(f"{tap:22} {label:20} {count:>7} {run.records:>7} {run.wall_s:6.1f} "
                      f"{count / run.wall_s:6.0f} {run.cpu_s:6.2f} {cpu_per_10k(run, count):9.3f} "
                      f"{per[(tap, label)]:8.3f}")
            old = f"tap-bigcommerce {OLD_VERSION}"
            for label in sorted({label for tap, label in per if tap == old}):
                if ("this tap", label) in per:
                    print(f"CPU per record, {label}: this tap / {OLD_VERSION} = "
                          f"{per[('this tap', label)] / per[(old, label)]:.3f} net of start-up, "
                          f"{cpu_ratio(rows, label, old):.3f} gross (target <= 0.333)")
            print(f"('written' < 'records' for {OLD_VERSION}: it drops records that fail its schema)", flush=True)
        if "memory" in only:
            print("\n3. memory: peak RSS of the tap process")
            print(f"{'streams':>30} {'orders':>8} {'records':>8} {'wall s':>7} {'CPU s':>7} {'peak RSS MB':>11}")
            for streams in (("orders",), ("orders",) + CHILDREN + ("refunds",)):
                rows = memory(sizes, workdir, timeout * 2, streams)
                name = "orders" if len(streams) == 1 else "orders, line items, ship., refunds"
                for count, run in rows:
                    print(f"{name:>30} {count:>8} {run.records:>8} {run.wall_s:7.1f} {run.cpu_s:7.2f} "
                          f"{run.maxrss_mb:11.1f}")
                small, large = rows[0][1].maxrss_mb, rows[-1][1].maxrss_mb
                print(f"{name}: growth {large / small - 1:+.1%} (target within 10%)", flush=True)
        if "family" in only:
            rows = family(sizes, workdir, not args.no_old, timeout)
            print(f"\n4. the order family: a full sync of {sizes.old_orders} orders, no latency, no quota")
            kinds = [name for name, _ in REQUEST_KINDS] + ["other"]
            print(f"{'requests':30}" + "".join(f"{tap:>24}" for tap, _, _ in rows))
            for kind in kinds + ["all requests"]:
                print(f"{kind:30}" + "".join(
                    f"{sum(counts.values()) if kind == 'all requests' else counts.get(kind, 0):>24}" for _, _, counts in rows))
            print(f"{'requests per order':30}" + "".join(f"{sum(c.values()) / sizes.old_orders:>24.3f}" for _, _, c in rows))
            print(f"{'records written':30}" + "".join(f"{run.records:>24}" for _, run, _ in rows))
            print(f"{'CPU s (per 10k orders)':30}" + "".join(
                f"{f'{run.cpu_s:.2f} ({run.cpu_s / sizes.old_orders * 10_000:.1f})':>24}" for _, run, _ in rows))
            print("(this tap: orders with line items, shipping consignments, order coupons and refunds; "
                  f"{OLD_VERSION}: orders, fetching each sub-resource link an order carries, the first 50 of each)",
                  flush=True)
        if "profile" in only:
            print("\n5. profile of this tap (all four streams, no latency, no quota)")
            print(profile(sizes, workdir, timeout), flush=True)
        if "deletions" in only:
            rows, state_kb = deletions(sizes, workdir, timeout * 2)
            print(f"\n6. deletions (detect_deletions: true) on the full store; requests spent finding them")
            print(f"{'sync':24}" + "".join(f"{s:>12}" for s in DELETION_STREAMS) + f"{'state KB':>10}")
            for label, spent, exact in rows:
                print(f"{label:24}" + "".join(f"{spent.get(s, 0):>10} {'ok' if exact[s] else 'XX'}"
                                               for s in DELETION_STREAMS) + f"{state_kb[label]:>10.1f}")
            bounds = {s: 10 * math.log2(sizes.store[s] / PAGE) for s in ("orders", "products")}
            print("(ok: the ids reported deleted are exactly those deleted; 10 x log2(N/250): "
                  + ", ".join(f"{s} {b:.0f}" for s, b in bounds.items())
                  + "; coupons are read whole, customers are probed by id:in where the count differs)")
            kb, ranges = state_size_for_a_million()
            print(f"a million delivered ids with 3,000 gaps: {ranges} ranges, {kb:.1f} KB of state", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
