"""The sync loop: worker threads read ranges, the calling thread writes what they read.

This module only wires the parts together, each of which owns one concern:

  - scan.py: how one range is read completely (the rules that keep every record);
  - scheduler.py: which range each worker reads next (partitions, splits, the quota);
  - state.py: writing pages in order and moving the bookmarks (the main thread's job);
  - client.py and pacing.py: the HTTP door and the shared rate-limit budget.

Workers fetch, decode, transform and encode a page to bytes, then hand it to the main thread
through one queue; only the main thread writes to stdout and touches the state. Workers send no
request while UNWRITTEN_PAGES encoded pages wait for the main thread, so a slow target holds
the tap back instead of filling its memory.
"""
import ctypes
import gc
import logging
import queue
import threading
import time
from datetime import datetime, timezone

from tap_bigcommerce import metrics, scan
from tap_bigcommerce.errors import Stopped
from tap_bigcommerce.scheduler import UNKNOWN_PAGES, Job, Scheduler
from tap_bigcommerce.state import StateKeeper, StreamRun
from tap_bigcommerce.streams import FULL_TABLE, INCREMENTAL
from tap_bigcommerce.transform import compile_transform, format_datetime

LOGGER = logging.getLogger(__name__)
M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # glibc's mallopt() parameters
UNWRITTEN_PAGES = 2  # while this many encoded pages wait for the main thread, workers send no request
GC_THRESHOLDS = (100_000, 50, 100)  # Python's default is (700, 10, 10)
STOP_WAIT_S = 1.0  # on an error or a signal, how long worker threads get to finish (they are daemons)
SCANS = {INCREMENTAL: scan.modified_range, FULL_TABLE: scan.whole_table}  # how each stream kind is read


class Syncer:
    """Runs the selected streams: workers fetch pages, the calling thread writes them."""

    def __init__(self, client, config, state, writer, clock=None):
        self.client = client
        self.config = config
        self.writer = writer
        self.keeper = StateKeeper(state, writer, config)
        self.now = clock or (lambda: datetime.now(timezone.utc))
        self._queue = queue.Queue()  # bounded by UNWRITTEN_PAGES: other messages are small
        self._unwritten = 0
        self._written = threading.Condition()
        self._stop = threading.Event()
        self._pool = _Pool(self._work, config.max_requests)
        self._runs = []
        self.scheduler = Scheduler(config, client, self._runs, self._pool.start, self.now)

    @property
    def state(self):
        """The state as it stands."""
        return self.keeper.state

    # ---- the main thread -------------------------------------------------------------------

    def run(self, selections):
        """Sync every selection; returns when all are written or raises the first error."""
        for selection in selections:
            stream = selection.stream
            self._runs.append(StreamRun(selection, compile_transform(stream, selection.schema, selection.fields)))
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
        self.keeper.close()

    def _handle(self, message):
        kind, job, payload = message
        if kind == "error":
            raise payload
        if kind == "records":
            self.keeper.page(job.run, job, payload.data, payload.count, payload.progress)
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

    def fetch(self, job, params, read, by_id):
        """Fetch one page; `read` turns it into a scan.Read while no other page is being decoded."""
        with self._written:
            # Fetching faster than the target takes pages would only hold them in memory.
            while self._unwritten >= UNWRITTEN_PAGES and not self._stop.is_set():
                self._written.wait(0.2)
        if self._stop.is_set():
            raise Stopped()
        stream = job.run.stream
        params = dict(params, limit=self.config.page_size)
        if stream.include:
            params["include"] = stream.include
        priority = UNKNOWN_PAGES if by_id else self.scheduler.priority(job)
        return self.client.get_page(stream, params, read, priority)

    def encode(self, job, records):
        """The page's records, transformed and encoded as RECORD lines."""
        run = job.run
        data = self.writer.record_lines(run.stream.name, [run.transform(record) for record in records],
                                        format_datetime(self.now()), run.version)
        with self._written:
            self._unwritten += 1
        return data


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
