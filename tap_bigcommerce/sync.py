"""The sync loop: worker threads read ranges, the calling thread writes what they read.

This module only wires the parts together, each of which owns one concern:

  - scan.py: how one range is read completely (the rules that keep every record);
  - scheduler.py: which range each worker reads next (partitions, splits, the quota);
  - state.py: writing pages in order and moving the bookmarks (the main thread's job);
  - client.py and pacing.py: the HTTP door and the shared rate-limit budget.

Workers fetch, decode, transform and encode a page to bytes, then hand it to the main thread
through one queue; only the main thread writes to stdout and touches the state. No request goes
out (pages fetched ahead included) while UNWRITTEN_PAGES pages wait in the queue, so a slow
target holds the tap back instead of filling its memory.
"""
import ctypes
import gc
import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from datetime import datetime, timezone

from tap_bigcommerce import children, metrics, scan
from tap_bigcommerce.config import Selection
from tap_bigcommerce.deletions import DELETED_AT, Finder
from tap_bigcommerce.discover import load_schema
from tap_bigcommerce.errors import ApiError, Stopped
from tap_bigcommerce.scheduler import UNKNOWN_PAGES, Job, Scheduler
from tap_bigcommerce.state import StateKeeper, StreamRun
from tap_bigcommerce.streams import (CHILD, CREATED, FULL_TABLE, INCREMENTAL, NONZERO, PAGED, SINGLE,
                                     STREAMS_BY_NAME, WINDOW)
from tap_bigcommerce.transform import compile_transform, format_datetime

LOGGER = logging.getLogger(__name__)
M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # glibc's mallopt() parameters
UNWRITTEN_PAGES = 2  # while this many pages wait in the queue for the main thread, no request goes out
GC_THRESHOLDS = (100_000, 50, 100)  # Python's default is (700, 10, 10)
STOP_WAIT_S = 1.0  # on an error or a signal, how long worker threads get to finish (they are daemons)
PREFETCH = 4  # pages of a page-numbered read out at once, once its first page tells how many there are
# How each kind of stream is read; CHILD and PER_PARENT streams come with their parent's pages.
SCANS = {INCREMENTAL: scan.modified_range, FULL_TABLE: scan.whole_table, CREATED: scan.created_window,
         PAGED: scan.paged_table, SINGLE: scan.single_record, WINDOW: scan.modified_window}


class Syncer:
    """Runs the selected streams: workers fetch pages, the calling thread writes them."""

    def __init__(self, client, config, state, writer, clock=None):
        self.client = client
        self.config = config
        self.writer = writer
        self.now = clock or (lambda: datetime.now(timezone.utc))
        self.keeper = StateKeeper(state, writer, config, self.now)
        self._later = threading.local()  # a worker's page in the making: see fetch()
        self._lines_fetched = 0  # orders whose embedded line items fell short
        self._count_lock = threading.Lock()
        self._queue = queue.Queue()  # bounded by UNWRITTEN_PAGES: other messages are small
        self._unwritten = 0
        self._written = threading.Condition()
        self._stop = threading.Event()
        self._pool = _Pool(self._work, config.max_requests)
        # Pages of a page-numbered read fetched ahead, and the sub-resources of a page's records
        # (two pools: a page's follow-up waits for sub-resources, never the other way round).
        self._pages = _Helpers(config.max_workers, "page")
        self._subs = _Helpers(config.max_workers, "sub")
        self._runs = []
        self.scheduler = Scheduler(config, client, self._runs, self._pool.start, self.now)

    @property
    def state(self):
        """The state as it stands."""
        return self.keeper.state

    # ---- the main thread -------------------------------------------------------------------

    def run(self, selections):
        """Sync every selection; returns when all are written or raises the first error."""
        self._runs.extend(stream_runs(selections))
        if not self._runs:
            LOGGER.warning("No stream is selected in the catalog; nothing to sync.")
        _tune_malloc()
        # Pages are big trees of short-lived dicts with no cycles among them: the cyclic garbage
        # collector's frequent passes over them cost a sixth of the CPU and never find anything.
        thresholds = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        finished = False
        try:
            for run in self._runs:
                for start in self.keeper.open(run):
                    # The open-ended range (or the only one) cuts the rest into partitions after its first page.
                    plan = run.stream.kind == INCREMENTAL and start.get("upper") is None
                    run.jobs.append(Job(run=run, plan=plan, **start))
                for job in run.jobs:
                    if not job.done:
                        self.scheduler.submit(job)
            metrics.load()  # while the first requests are out
            while self.scheduler.pending:
                self._handle(self._queue.get())
            self._find_deletions()
            finished = True
        finally:
            # On an error or a signal no request goes out from here on, and threads still
            # waiting for a slow store are left behind rather than waited for.
            self._stop.set()
            self.client.stop()
            self._drain_queue()
            self._pool.close(STOP_WAIT_S if not finished else None)
            # Frozen objects stay frozen: handed back to the collector, they made the final
            # collection at exit take 0.1 s after a large sync.
            gc.set_threshold(*thresholds)
        if self._lines_fetched:
            LOGGER.info("orders: %d orders had more line items than their consignments embedded; "
                        "read them whole from /orders/{id}/products", self._lines_fetched)
        self.keeper.checkpoint()  # the final STATE

    def _find_deletions(self):
        """Streams read incrementally whose ids are kept: which delivered records are gone
        (deletions.py); full tables have found theirs at the end of their read."""
        finder = Finder(self.client, self.config.page_size)
        for run in self._runs:
            if run.track and run.stream.deletions and run.stream.kind not in (FULL_TABLE, PAGED):
                before, tracker = finder.requests, self.keeper.tracker
                if run.stream.name in tracker.baselines:
                    LOGGER.info("%s: listing the store's ids once, to start the set of delivered ids", run.stream.name)
                    gone = tracker.start_from(run.stream, finder.every_id(run.stream))
                else:
                    gone = finder.gone(run.stream, tracker.delivered(run.stream))
                self.keeper.deleted(run, gone)
                self.keeper.checkpoint()
                LOGGER.info("%s: looked for deleted records with %d requests", run.stream.name,
                            finder.requests - before)

    def _handle(self, message):
        kind, job, payload = message
        if kind == "error":
            raise payload
        if kind == "records":
            self.keeper.page(job.run, job, payload.data, payload.count, payload.progress, payload.keys)
            with self._written:
                self._unwritten -= 1
                self._written.notify()
        elif kind == "plan":
            self.scheduler.planned(job, payload)
            return
        elif kind == "parked":
            self.scheduler.parked(job)
        elif kind == "done":
            self.scheduler.finished(job)
            self.keeper.range_done(job.run)
        self.scheduler.rebalance()

    def _drain_queue(self):
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    # ---- worker threads --------------------------------------------------------------------

    def _put(self, message):
        if self._stop.is_set():
            raise Stopped()
        if message[0] == "records":
            with self._written:
                self._unwritten += 1
        self._queue.put(message)

    def _work(self, job):
        """Read one range with its kind's scan; the scheduler may stop it after any page."""
        try:
            parked = False
            pages = SCANS[job.run.stream.kind](self, job)
            for got in pages:
                self._put(("records", job, got))
                if got.ordered:
                    partitions, parked = self.scheduler.after_page(job, got)
                    if partitions is not None:
                        self._put(("plan", job, partitions))
                    if parked:
                        pages.close()
                        break
            self._pool.idle()  # before "done", so the job it leads to finds this thread free
            self._put(("parked" if parked else "done", job, None))
        except Stopped:
            pass
        except BaseException as exc:  # handed to the main thread, which raises it
            self._stop.set()
            self._queue.put(("error", job, exc))

    # What scan.py's scans read through (the `source` they are handed).

    @staticmethod
    def stream_of(job):
        """The row of the stream a range belongs to."""
        return job.run.stream

    def fetch(self, job, params, read, by_id, path=None):
        """Fetch one page; `read` turns it into a scan.Read while no other page is being decoded.
        `path` asks for a sub-list of one record rather than the job's stream's own list."""
        with self._written:
            # Fetching faster than the target takes pages would only hold them in memory. (Only
            # pages in the queue count: the main thread writes those whatever else waits.)
            while self._unwritten >= UNWRITTEN_PAGES and not self._stop.is_set():
                self._written.wait(0.2)
        if self._stop.is_set():
            raise Stopped()
        stream = job.run.stream
        params = dict(params, **dict(stream.params))
        if stream.kind != SINGLE:  # one object has no pages
            params["limit"] = self.config.page_size
        if stream.include:
            params["include"] = stream.include
        priority = UNKNOWN_PAGES if by_id else self.scheduler.priority(job)
        # encode() notes here what the page still needs: it runs while the page is decoded, and
        # no other request may wait on that.
        self._later.orders, self._later.fetch, self._later.keys = [], [], []
        got = self.client.get_page(stream, params, read, priority, path)
        got.keys = self._later.keys
        if self._later.orders or self._later.fetch:
            got.data += self._follow_up(job)
        return got

    def fetch_pages(self, job, queries, reader, path=None):
        """Fetch pages of a page-numbered read PREFETCH at a time; yields their Reads in order.
        `reader()` makes each page's read function; `queries` may go on for ever (close the
        generator at the last page)."""
        queries, pending = iter(queries), deque()

        def submit():
            query = next(queries, None)
            if query is not None:
                pending.append(self._pages.submit(self.fetch, job, query, reader(), True, path))

        for _ in range(PREFETCH):
            submit()
        try:
            while pending:
                got = pending.popleft().result()
                yield got
                submit()  # only once the page is taken: the last one asks for nothing more
        finally:
            # Pages asked for and not handed out (past the end of a list that does not say where
            # it ends, or the read stopped) are dropped once they come.
            for future in pending:
                try:
                    future.result()
                except BaseException:  # noqa: BLE001 - the read is over; its error is not this one
                    continue

    def pages(self, stream):
        """Every page of a whole list, one request at a time (for its ids: nothing is written)."""
        return self.client.pages(stream, dict(stream.params, limit=self.config.page_size))

    def encode(self, job, records):
        """The page's records and what is taken from them, transformed and encoded as RECORD lines.

        Orders whose embedded line items fall short wait for fetch() to read their lines whole.
        """
        run = job.run
        if run.stream.lines_path:
            whole = [children.lines_whole(record) for record in records]
            self._later.orders = [record for record, ok in zip(records, whole) if not ok]
            if self._later.orders:
                records = [record for record, ok in zip(records, whole) if ok]
        return self._lines(run, records)

    def _lines(self, run, records):
        """RECORD lines for records of the stream read and of its children; notes the sub-resources to fetch."""
        now = format_datetime(self.now())
        parts = []
        for selection, transform in run.children:
            child = selection.stream
            if child.kind == CHILD:
                taken = [transform(row) for record in records for row in children.TAKE[child.take](record)]
                parts.append(self.writer.record_lines(child.name, taken, now, run.version))
            else:
                self._later.fetch.extend((selection, transform, record.get("id"), record.get("date_modified"))
                                         for record in records if _wanted(child.when, record))
        if run.emit:
            if run.track:
                self._later.keys.extend(record.get("id") for record in records)
            written = [run.transform(r) for r in records]
            if run.track and run.stream.archived:  # archived (orders): deleted, as far as a warehouse goes
                for record in written:
                    if record.get(run.stream.archived) is True:
                        record[DELETED_AT] = record.get(run.stream.replication_key)
            parts.append(self.writer.record_lines(run.stream.name, written, now, run.version))
        return b"".join(parts)

    def _follow_up(self, job):
        """Finish a page: read whole the line items of orders whose embedded ones fell short, then
        the sub-resources of its records, several at once (all through the same rate-limit
        budget); their lines."""
        run, later = job.run, self._later
        orders, later.orders, kept = later.orders, [], []
        paths = [run.stream.lines_path.format(id=order.get("id")) for order in orders]
        for order, lines in zip(orders, self._subs.map(self._read_all, [run.stream] * len(orders), paths)):
            if lines is not None:  # else deleted meanwhile: not written, as if read a moment later
                children.place(order, lines)
                kept.append(order)
        if orders:
            with self._count_lock:
                self._lines_fetched += len(orders)
        parts = [self._lines(run, kept)]
        fetches, later.fetch = later.fetch, []
        now = format_datetime(self.now())
        streams = [selection.stream for selection, _, _, _ in fetches]
        paths = [stream.path.format(id=parent_id) for stream, (_, _, parent_id, _) in zip(streams, fetches)]
        for (selection, transform, parent_id, moment), rows in zip(fetches, self._subs.map(self._read_all, streams,
                                                                                         paths)):
            child, rows = selection.stream, rows or []
            if child.parent_key:
                rows = [dict({child.parent_key: parent_id}, **row) for row in rows]
            if child.replication_key:  # the parent's date, which its bookmark follows
                rows = [dict(row, **{child.replication_key: moment}) for row in rows]
            parts.append(self.writer.record_lines(child.name, [transform(row) for row in rows], now, run.version))
        return b"".join(parts)

    def _read_all(self, stream, path):
        """Every record of a small list (a sub-resource of one record), page by page or by cursor.
        None where the record was deleted after its page was read (the list answers 404)."""
        try:
            return [record for page in self.client.pages(stream, {"limit": self.config.page_size}, path)
                    for record in page.records]
        except ApiError as exc:
            # The list it belongs to was read a moment ago with this store hash, so a 404
            # means the record is gone (with its sub-resources), not a wrong store.
            if exc.status != 404:
                raise
            LOGGER.info("%s: /%s answered 404; the record it belongs to was deleted meanwhile", stream.name, path)
            return None


def stream_runs(selections):
    """One StreamRun per stream read. A parent's run carries its selected children; a child
    selected without its parent has the parent read whole and not written."""
    families = {}
    for selection in selections:
        families.setdefault(selection.stream.family, []).append(selection)
    runs = []
    for family, members in families.items():
        head = next((member for member in members if member.stream.name == family), None)
        emit = head is not None
        if head is None:
            schema = load_schema(STREAMS_BY_NAME[family])
            head = Selection(STREAMS_BY_NAME[family], schema, tuple(schema["properties"]))
        kids = [(member, compile_transform(member.stream, member.schema, member.fields))
                for member in members if member is not head]
        runs.append(StreamRun(head, compile_transform(head.stream, head.schema, head.fields), emit, kids))
    return runs


def _wanted(when, record):
    """Whether a parent record has the sub-resource fetched for it: its field equals the value, or
    is NONZERO (an amount, a number or text such as "5.0000"; unreadable counts as not zero)."""
    field, value = when
    if value != NONZERO:
        return record.get(field) == value
    try:
        return float(record.get(field)) != 0
    except (TypeError, ValueError):
        return record.get(field) not in (None, "")


class _Pool:
    """Worker threads, started only when none is free: each one that has decoded a page keeps
    some memory, so a store read well by four workers never gets sixteen."""

    def __init__(self, work, most):
        self._work = work
        self._most = most
        self._jobs = queue.Queue()  # jobs waiting for a worker thread
        self._threads = []
        self._idle = 0  # worker threads with no job, not yet promised one
        self._lock = threading.Lock()

    def start(self, job):
        """Hand a job to a free thread, or to a new one."""
        self._jobs.put(job)
        with self._lock:
            if self._idle:
                self._idle -= 1  # a waiting thread takes it
                return
        if len(self._threads) < self._most:
            thread = threading.Thread(target=self._loop, name=f"fetch-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def idle(self):
        """The calling worker is about to finish its job."""
        with self._lock:
            self._idle += 1

    def close(self, wait_s=None):
        """Stop every thread once it has finished its job, waiting at most wait_s in all."""
        for _ in self._threads:
            self._jobs.put(None)
        deadline = None if wait_s is None else time.monotonic() + wait_s
        for thread in self._threads:
            thread.join(None if deadline is None else max(deadline - time.monotonic(), 0))

    def _loop(self):
        while (job := self._jobs.get()) is not None:
            self._work(job)


class _Helpers:
    """Daemon threads for short tasks handed out by the workers (pages fetched ahead, sub-resources),
    started as they are needed. Daemons, like the workers: a sync that stops never waits for a
    request still out (a stopped client sends no new one)."""

    def __init__(self, most, name):
        self._most = most
        self._name = name
        self._tasks = queue.SimpleQueue()
        self._threads = 0
        self._busy = 0
        self._lock = threading.Lock()

    def submit(self, function, *args):
        """Run function(*args) on a helper thread; returns its Future."""
        future = Future()
        with self._lock:
            self._busy += 1
            start = self._busy > self._threads and self._threads < self._most
            if start:
                self._threads += 1
        self._tasks.put((future, function, args))
        if start:
            threading.Thread(target=self._loop, name=f"{self._name}-{self._threads}", daemon=True).start()
        return future

    def map(self, function, *columns):
        """function over the rows of the columns, all submitted at once; the results in order."""
        futures = [self.submit(function, *args) for args in zip(*columns)]
        return (future.result() for future in futures)

    def _loop(self):
        while True:
            future, function, args = self._tasks.get()
            try:
                future.set_result(function(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                future.set_exception(exc)
            finally:
                with self._lock:
                    self._busy -= 1


def _tune_malloc():
    """Keep glibc's malloc from holding on to memory the workers have freed (Linux only).

    glibc gives every thread its own arena, and raises the size above which it maps big blocks
    (a page's body, a page of encoded records) each time one is freed, after which they come
    from the arenas and leave holes there. Two arenas and a fixed 128 KiB threshold keep the
    tap's peak memory where its pages in flight put it, however long the sync runs.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return
    mallopt(M_ARENA_MAX, 2)
    mallopt(M_MMAP_THRESHOLD, 128 * 1024)
