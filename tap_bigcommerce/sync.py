"""The one sync loop: page, transform, emit, checkpoint. Bookmarks live here and nowhere else.

Reading without loss. An incremental stream is read in date_modified order from its bookmark,
never by page number: each request asks for the first page at or after the newest
date_modified already seen (the filters are inclusive), and skips the ids it has already
emitted at that second. A record edited while we page moves to a later date_modified, which the
scan still reaches, so it cannot fall between two pages. When a whole page shares one second
(a bulk import), the tap reads that second alone in id order with the stream's keyset
(min_id, id:greater or the customers cursor) and then moves on to the next second.
BigCommerce dates carry whole seconds, which is what makes "the next second" exact.

Concurrency. Workers fetch, decode, transform and encode; only the main thread writes and
keeps the state. After a stream's first page the tap estimates how many pages remain and splits
the rest of the date range into partitions (the last one open-ended, so records edited during
the sync land in it) that workers scan in parallel, all drawing on the client's one Pacer. An
idle worker takes the back part of the longest range still being read, cut where the range's
owner keeps whole pages. The bookmark only moves to the newest date_modified below which every
record has been written: the first partition that has not finished holds it back, however far
the later ones have got.

Under a quota. Until the end is in sight, the tap reads only as many ranges at once as spend a
window's quota in two thirds of it: more would only wait for the window, and every range ends
with a short page. A range whose next page is its last (v3 counts what is left; for v2 it is
estimated) puts that page aside and its worker takes other work, so the early windows are spent
on full pages. When all that is left fits in one window, the pages put aside all go at once,
ranges of three pages or more are split so that no long chain of requests remains, and pages
whose range has more to come are decoded first. A page waits at most PARK_LIMIT_S, because the
bookmark cannot pass it.
"""
import bisect
import ctypes
import gc
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Optional

from tap_bigcommerce import metrics
from tap_bigcommerce.config import bookmark_start
from tap_bigcommerce.errors import ApiError
from tap_bigcommerce.streams import CURSOR, ID_GREATER, MIN_ID
from tap_bigcommerce.transform import BadDate, compile_transform, format_datetime, parse_datetime

LOGGER = logging.getLogger(__name__)
ONE_SECOND = timedelta(seconds=1)
PAGES_PER_PARTITION = 20  # fewer pages than this per partition wastes requests on short last pages
MIN_PAGES_TO_SPLIT = 2  # a running range is split for an idle worker only if this much is left
PAGE_SLACK = 0.1  # a split leaves the older job this share of each page unfilled, for estimate error
PROGRESS_EVERY_S = 5.0
M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # glibc's mallopt() parameters
END_PAGES_TO_SPLIT = 3  # once the end is in sight, a range this long is split (a chain of 3 requests is too long)
QUOTA_SPREAD = 2 / 3  # until the end is in sight, ranges enough to spend a window's quota in this share of it
PARK_LIMIT_S = 60.0  # a range's last page waits at most this long for the end of the sync (the bookmark waits too)
UNKNOWN_PAGES = 1_000_000  # the decoding priority of a page whose job cannot tell what it has left
UNWRITTEN_PAGES = 2  # while this many encoded pages wait for the main thread, workers send no request
GC_THRESHOLDS = (100_000, 50, 100)  # Python's default is (700, 10, 10)


@dataclass
class Job:
    """One worker's share of a stream: a date_modified range [lower, upper], or the whole id range."""

    run: "StreamRun"
    lower: Optional[datetime] = None
    upper: Optional[datetime] = None
    plan: bool = False  # the stream's first job: it splits the rest of the range after page one
    last_id: Optional[int] = None  # full-table resume point
    emitted_max: Optional[datetime] = None
    done: bool = False
    splittable: bool = False  # set by the main thread once no one else will change the range
    position: Optional[datetime] = None  # where the worker's scan stands (inclusive)
    density: Optional[float] = None  # records per second of date_modified in the newest full page
    counted: Optional[tuple] = None  # (records left, the upper bound they were counted under): v3 counts
    seen: set = field(default_factory=set)  # ids already emitted at the second `position`
    parked_at: Optional[float] = None  # when the job put its last page aside (time.monotonic)
    last_page: bool = False  # taken back from the parked ones: it reads its last page, and does not park again
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def remaining(self, now):
        """(records left, seconds left, records per second), or None if the job cannot be split."""
        with self.lock:
            if self.parked_at is not None or not self.splittable:
                return None
            return self._remaining(now)

    def _remaining(self, now):
        if self.done or self.density is None or self.lower is None:
            return None
        start = self.position if self.position is not None else self.lower
        end = self.upper if self.upper is not None else now
        seconds = (end - start).total_seconds()
        counted = self._counted_left()
        if counted is not None:
            return counted, seconds, self.density
        # Stores are rarely uniform in time (and a range often starts long before its first
        # record), so the newest page says more about what is ahead than the average does.
        return self.density * seconds, seconds, self.density

    def _counted_left(self):
        """The records v3 counted as left, if they were counted under the current upper bound."""
        if self.counted is not None and self.counted[1] == self.upper:
            return self.counted[0]
        return None

    def next_page_is_last(self, now, page_size, reread):
        """Whether what is left of this closed range should fit in its next page.

        `reread` is how many ids at the position's second the next request reads again. A v3
        count already holds them; a v2 estimate does not, and leaves PAGE_SLACK for its error.
        """
        with self.lock:
            if self.upper is None or self.last_page:  # the open range: edits keep arriving at its end
                return False
            counted = self._counted_left()
            if counted is not None:
                return counted <= page_size
            estimate = self._remaining(now)
        return estimate is not None and estimate[0] + reread <= page_size * (1 - PAGE_SLACK)

    def pages_left(self, now, page_size):
        """About how many requests the job still needs, or None if it cannot tell yet."""
        with self.lock:
            if self.done:
                return 0
            if self.parked_at is not None:
                return 1
            estimate = self._remaining(now)
            return None if estimate is None else max(math.ceil(estimate[0] / page_size), 1)

    def split(self, now, page_size):
        """Hand the back half of what is left to a new job, or None if there is too little.

        The cut is placed so that this job keeps a whole number of pages, a little under full,
        by the density of its newest page: its last page is then nearly full and the split costs
        no extra request, whereas a cut at the middle of the dates wastes half a page on average.
        """
        with self.lock:
            estimate = self._remaining(now)
            if estimate is None:
                return None
            records, seconds, density = estimate
            keep_pages = max(int(records / page_size / 2), 1)
            keep_seconds = max(int(keep_pages * page_size * (1 - PAGE_SLACK) / density), 1)
            if keep_seconds >= seconds:
                return None
            middle = (self.position if self.position is not None else self.lower) + timedelta(seconds=keep_seconds)
            rest = Job(self.run, lower=middle, upper=self.upper, density=density)
            self.upper = middle - ONE_SECOND
            return rest


@dataclass
class StreamRun:
    """What the main thread knows of one stream while it syncs."""

    selection: object
    transform: object
    jobs: list = field(default_factory=list)
    version: Optional[int] = None
    count: int = 0
    counted: int = 0  # records already reported in a record_count metric
    last_progress: float = 0.0

    @property
    def stream(self):
        """The stream's row."""
        return self.selection.stream

    def watermark(self):
        """The newest date_modified below which every record of this run has been written."""
        mark = None
        for job in self.jobs:
            if job.emitted_max is not None and (mark is None or job.emitted_max > mark):
                mark = job.emitted_max
            if not job.done:
                break
        return mark


class Syncer:
    """Runs the selected streams: workers fetch pages, the calling thread writes them."""

    def __init__(self, client, config, state, writer, clock=None):
        self.client = client
        self.config = config
        self.state = state
        self.state.setdefault("bookmarks", {})
        self.writer = writer
        self.now = clock or (lambda: datetime.now(timezone.utc))
        self._queue = queue.Queue()  # bounded by UNWRITTEN_PAGES: other messages are small
        self._unwritten = 0
        self._written = threading.Condition()
        self._stop = threading.Event()
        self._pending = 0  # jobs submitted and not done
        self._jobs = queue.Queue()  # jobs waiting for a worker thread
        self._threads = []
        self._idle = 0  # worker threads with no job, not yet promised one
        self._idle_lock = threading.Lock()
        self._parked = []  # jobs whose last page waits for the end of the sync
        self._last_pages = 0  # jobs taken back from the parked ones and not done

    # ---- the main thread -------------------------------------------------------------------

    def run(self, selections):
        """Sync every selection; returns when all are written or raises the first error."""
        runs = []
        for selection in selections:
            stream = selection.stream
            self.writer.schema(
                stream.name,
                selection.schema,
                [stream.key],
                [stream.replication_key] if stream.replication_key else None,
            )
            runs.append(StreamRun(selection, compile_transform(stream, selection.schema, selection.fields)))
        if not runs:
            LOGGER.warning("No stream is selected in the catalog; nothing to sync.")
        self._runs = runs
        _tune_malloc()
        # Pages are big trees of short-lived dicts with no cycles among them: the cyclic garbage
        # collector's frequent passes over them cost a sixth of the CPU and never find anything.
        thresholds = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            for run in runs:
                self._submit(self._first_job(run))
            metrics.load()  # while the first requests are out
            while self._pending:
                self._handle(self._queue.get())
        finally:
            self._stop.set()
            self._drain_queue()
            for _ in self._threads:
                self._jobs.put(None)
            for thread in self._threads:
                thread.join()
            # Frozen objects stay frozen: handed back to the collector, they made the final
            # collection at exit take 0.1 s after a large sync.
            gc.set_threshold(*thresholds)
        self.writer.state(self.state)

    def _first_job(self, run):
        stream = run.stream
        bookmark = self.state["bookmarks"].get(stream.name, {})
        if stream.replication_key:
            job = Job(run, lower=bookmark_start(self.state, stream, self.config), plan=True)
        else:
            resumed = "version" in bookmark and "last_id" in bookmark
            run.version = bookmark["version"] if resumed else int(time.time() * 1000)
            job = Job(run, last_id=bookmark["last_id"] if resumed else None)
            if resumed:
                LOGGER.info("%s: resuming the full-table sync after id %s", stream.name, job.last_id)
            elif "version" not in bookmark:
                # The first sync ever activates its version at once, so the table exists even
                # while it fills; later syncs keep the old version visible until theirs is whole.
                self.writer.activate_version(stream.name, run.version)
        run.jobs.append(job)
        return job

    def _submit(self, job):
        if job.run.stream.replication_key and not job.plan:
            job.splittable = True
        self._pending += 1
        self._jobs.put(job)
        with self._idle_lock:
            if self._idle:
                self._idle -= 1  # a waiting thread takes it
                return
        if len(self._threads) < self.config.max_requests:
            # Threads start only when none is free: each one that has decoded a page keeps some
            # memory, so a store read well by four workers never gets sixteen.
            thread = threading.Thread(target=self._worker, name=f"fetch-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _handle(self, message):
        kind, job, payload = message
        if kind == "error":
            raise payload
        run = job.run
        if kind == "records":
            data, count, progress = payload
            self._write(run, job, data, count, progress)
            self._rebalance()
        elif kind == "plan":
            for new_job in payload:
                run.jobs.append(new_job)
                self._submit(new_job)
            job.splittable = True
            if payload:
                LOGGER.info("%s: reading the rest in %d parallel partitions", run.stream.name, len(payload) + 1)
        elif kind == "parked":
            self._pending -= 1
            with job.lock:
                job.parked_at = time.monotonic()
            self._parked.append(job)
            self._rebalance()
        elif kind == "done":
            self._pending -= 1
            if job.last_page:
                self._last_pages -= 1
            with job.lock:
                job.done = True
            # A range that finishes may be what held the bookmark back.
            moved = run.stream.replication_key and self._advance_bookmark(run)
            if all(other.done for other in run.jobs):
                self._finish(run)
            elif moved:
                self.writer.state(self.state)
            self._rebalance()

    def _rebalance(self):
        """Give idle workers part of the longest range still being read (ranges are rarely even).

        Workers are only as many as _workers() says (the Flow, the quota, the end in sight);
        ranges whose last page was put aside do not count, and when nothing is worth splitting
        an idle worker takes one of those last pages. Only ranges
        longer than their fair share (all the pages left, spread over the workers) are split: a
        range that ends no later than the others gains nothing from a split, and every range's
        last page is a short one, so needless splits cost requests.
        """
        now = self.now().replace(microsecond=0)
        page_size = self.config.page_size
        # The end is in sight when all that is left fits in one window of the store's quota: then
        # the last pages put aside go, and ranges are split until none is a long chain of requests.
        ending = self._fits_in_one_window(now)
        workers = self._workers(ending)
        if ending and self._parked:
            LOGGER.info("The rest fits in one window of the store's quota: reading the %d last pages put aside.",
                        len(self._parked))
            while self._parked:
                self._unpark()
        while self._parked and time.monotonic() - self._parked[0].parked_at >= PARK_LIMIT_S:
            self._unpark()  # the bookmark has waited long enough for it
        while self._pending - self._last_pages < workers:
            candidates = [
                (left[0], run, index, job)
                for run in self._runs
                for index, job in enumerate(run.jobs)
                if (left := job.remaining(now)) and left[1] >= 2
            ]
            fair_share = sum(candidate[0] for candidate in candidates) / workers
            records, run, index, job = max(candidates, key=lambda candidate: candidate[0], default=(0,) * 4)
            new_job = None
            if records >= max((END_PAGES_TO_SPLIT if ending else MIN_PAGES_TO_SPLIT) * page_size, fair_share):
                new_job = job.split(now, page_size)
            if new_job is None:
                if not self._parked:
                    return
                self._unpark()  # nothing worth splitting: an idle worker takes a last page
                continue
            run.jobs.insert(index + 1, new_job)  # keeps run.jobs in range order for the watermark
            LOGGER.debug("%s: an idle worker takes %s to %s", run.stream.name, new_job.lower, new_job.upper or "now")
            self._submit(new_job)

    def _fits_in_one_window(self, now):
        """Whether the requests left (about) fit in one window of the store's quota."""
        quota = self.client.pacer.quota
        if quota is None:
            return True
        left = 0
        for run in self._runs:
            for job in run.jobs:
                pages = job.pages_left(now, self.config.page_size)
                if pages is None:
                    return False
                left += pages
                if left > quota:
                    return False
        return True

    def _workers(self, ending=False):
        """How many ranges to read at once.

        At most max_workers, and no more than the Flow lets out. Until the end is in sight, no
        more than spend the store's quota in two thirds of its window either: more ranges would
        only wait for the window to turn, and each range ends with a short page.
        """
        if ending and self.client.pacer.waited:
            return self.config.max_requests
        workers = min(self.client.flow.limit(), self.config.max_workers)
        quota, window_s, request_s = self.client.pacer.quota, self.client.pacer.window_s, self.client.flow.request_s
        if not ending and quota and window_s and request_s:
            workers = min(workers, max(math.ceil(quota * request_s / (window_s * QUOTA_SPREAD)), 2))
        return workers

    def _unpark(self):
        job = self._parked.pop(0)
        with job.lock:
            job.parked_at = None
        job.last_page = True
        self._last_pages += 1
        self._submit(job)

    def _write(self, run, job, data, count, progress):
        stream = run.stream
        self.writer.write(data)
        with self._written:
            self._unwritten -= 1
            self._written.notify()
        run.count += count
        bookmarks = self.state["bookmarks"]
        if stream.replication_key:
            if progress is not None:
                job.emitted_max = progress if job.emitted_max is None else max(job.emitted_max, progress)
            self._advance_bookmark(run)
        elif progress is not None:
            bookmarks[stream.name] = {"version": run.version, "last_id": progress}
        self.writer.state(self.state)
        if time.monotonic() - run.last_progress >= PROGRESS_EVERY_S:
            run.last_progress = time.monotonic()
            self._report(run, f"{run.count} records so far")

    def _advance_bookmark(self, run):
        """Move the stream's bookmark up to its watermark; True if it moved."""
        stream = run.stream
        mark = run.watermark()
        if mark is None:
            return False
        entry = self.state["bookmarks"].setdefault(stream.name, {})
        current = entry.get(stream.replication_key)
        if current is None or parse_datetime(current) < mark:
            entry[stream.replication_key] = format_datetime(mark)
            return True
        return False

    def _bookmark_text(self, run):
        entry = self.state["bookmarks"].get(run.stream.name, {})
        if run.stream.replication_key:
            return entry.get(run.stream.replication_key) or "none yet"
        return f"id {entry['last_id']}" if "last_id" in entry else "none (full table)"

    def _finish(self, run):
        stream = run.stream
        if not stream.replication_key:
            self.writer.activate_version(stream.name, run.version)
            self.state["bookmarks"][stream.name] = {"version": run.version}
        self.writer.state(self.state)
        self._report(run, f"done, {run.count} records")

    def _report(self, run, what):
        """A progress line and a Singer record_count metric for the records since the last one."""
        LOGGER.info("%s: %s, bookmark %s", run.stream.name, what, self._bookmark_text(run))
        metrics.record_count(run.stream.name, run.count - run.counted)
        run.counted = run.count

    def _drain_queue(self):
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    # ---- worker threads --------------------------------------------------------------------

    def _put(self, message):
        if self._stop.is_set():
            raise _Stopped()
        self._queue.put(message)

    def _worker(self):
        while (job := self._jobs.get()) is not None:
            self._work(job)

    def _work(self, job):
        try:
            parked = False
            if job.run.stream.replication_key:
                parked = self._scan_modified(job)
            else:
                self._scan_ids(job, {}, job.last_id, skip=frozenset())
            with self._idle_lock:
                self._idle += 1  # before "done", so the job it leads to finds this thread free
            self._put(("parked" if parked else "done", job, None))
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the main thread, which raises it
            self._stop.set()
            self._queue.put(("error", job, exc))

    def _get(self, stream, params, read, priority=0):
        """Fetch one page; `read` turns it into a _Read while no other page is being decoded."""
        with self._written:
            # Fetching faster than the target takes pages would only hold them in memory.
            while self._unwritten >= UNWRITTEN_PAGES and not self._stop.is_set():
                self._written.wait(0.2)
        if self._stop.is_set():
            raise _Stopped()
        params = dict(params, limit=self.config.page_size)
        if stream.include:
            params["include"] = stream.include
        return self.client.get_page(stream, params, read, priority)

    def _encode(self, job, records):
        """The page's records, transformed and encoded as RECORD lines."""
        run = job.run
        data = self.writer.record_lines(run.stream.name, [run.transform(record) for record in records],
                                        format_datetime(self.now()), run.version)
        with self._written:
            self._unwritten += 1
        return data

    def _emit(self, job, read, progress):
        self._put(("records", job, (read.data, read.count, progress)))

    def _scan_modified(self, job):
        """Read [job.lower, job.upper] in date_modified order, keyset style; True if it parked its last page."""
        stream = job.run.stream
        if job.position is None:
            self._moved(job, job.lower)
        while True:
            with job.lock:
                # Between pages the scan's position is where the next request starts (inclusive).
                lower, upper = job.position, job.upper
            seen = job.seen
            params = dict(stream.sort_by_modified)
            params.update(self._modified_range(stream, lower, upper))

            def read(page):
                records, has_more = page.records, page.has_more
                moments = _modified_moments(stream, records, lower, upper)
                with job.lock:
                    if job.upper is not None and moments and moments[-1] > job.upper:
                        # The main thread gave the end of this range to a new job while the page
                        # was in flight: keep our part; the new job reads the rest.
                        keep = bisect.bisect_right(moments, job.upper)
                        records, moments, has_more = records[:keep], moments[:keep], False
                    if moments:
                        # From here on a split may only cut above what this page hands out.
                        job.position = max(job.position, moments[-1])
                if has_more and moments[0] == moments[-1]:
                    return _Read(size=len(records), first=moments[0], last=moments[0], drain=True)
                fresh = [r for r, moment in zip(records, moments) if moment != lower or r.get("id") not in seen]
                last = moments[-1] if moments else None
                return _Read(self._encode(job, fresh), len(fresh), has_more, len(records), page.total,
                             moments[0] if moments else None, last,
                             [r.get("id") for r, moment in zip(records, moments) if moment == last])

            got = self._get(stream, params, read, self._priority(job))
            if got.drain:
                # A whole page in one second: read that second alone, in id order.
                second = got.first
                self._moved(job, second)
                self._scan_ids(job, self._modified_range(stream, second, second),
                               None, skip=seen if second == lower else frozenset(), second=second)
                job.seen = set()
                self._moved(job, second + ONE_SECOND)
                continue
            self._emit(job, got, got.last)
            if not got.has_more:
                return False
            if job.plan:
                job.plan = False
                self._split(job, got)
            if got.last != lower:
                job.seen = set()
            job.seen.update(got.ids_at_last)
            density = got.size / max((got.last - got.first).total_seconds(), 1.0)
            # v3 counts what matched the request: all of it but this page is left to read, and the
            # next request reads the ids at this page's last second again.
            counted = (got.total - got.size + len(got.ids_at_last), upper) if got.total is not None else None
            self._moved(job, got.last, density, counted)
            if job.next_page_is_last(self.now(), self.config.page_size, len(got.ids_at_last)):
                return True

    def _priority(self, job):
        """The pages a job has left: pages of ranges with more to come are decoded first."""
        pages = job.pages_left(self.now(), self.config.page_size)
        return UNKNOWN_PAGES if pages is None else pages

    @staticmethod
    def _moved(job, position, density=None, counted=None):
        with job.lock:
            job.position = position
            job.counted = counted
            if density is not None:
                job.density = density

    def _scan_ids(self, job, base_params, last_id, skip, second=None):
        """Read in id order with the stream's keyset, after last_id (a whole table or one second)."""
        stream = job.run.stream
        params = dict(stream.sort_by_id)
        params.update(base_params)
        cursor = None
        while True:
            query = dict(params)
            if stream.id_keyset == CURSOR and cursor:
                query["after"] = cursor
            elif last_id is not None and stream.id_keyset == MIN_ID:
                query["min_id"] = last_id + 1
            elif last_id is not None and stream.id_keyset == ID_GREATER:
                query["id:greater"] = last_id

            def read(page):
                ids = [record.get("id") for record in page.records]
                if any(not isinstance(i, int) for i in ids) or ids != sorted(set(ids)) or (
                    last_id is not None and stream.id_keyset != CURSOR and ids and ids[0] <= last_id
                ):
                    raise ApiError(f"{stream.name}: the store returned records out of id order; "
                                   "stopping rather than risk a gap.")
                if second is not None:
                    _modified_moments(stream, page.records, second, second)
                fresh = [record for record in page.records if record["id"] not in skip]
                return _Read(self._encode(job, fresh), len(fresh), page.has_more, len(ids),
                             last_id=ids[-1] if ids else None, cursor=page.end_cursor)

            got = self._get(stream, query, read, UNKNOWN_PAGES)
            self._emit(job, got, second if second is not None else (got.last_id if got.last_id is not None else last_id))
            if not got.has_more or got.last_id is None:
                return
            last_id = got.last_id
            cursor = got.cursor
            if stream.id_keyset == CURSOR and not cursor:
                raise ApiError(f"{stream.name}: the store gave no cursor to continue from; stopping rather than risk a gap.")

    def _modified_range(self, stream, lower, upper):
        params = {stream.modified_min: lower.strftime(stream.modified_format)}
        if upper is not None:
            params[stream.modified_max] = upper.strftime(stream.modified_format)
        return params

    def _split(self, job, got):
        """After page one, cut the rest of the range into partitions for idle workers."""
        workers = self._workers()
        start = got.last
        end = self.now().replace(microsecond=0)
        seconds = int((end - start).total_seconds())
        if workers < 2 or seconds < 2:
            self._put(("plan", job, []))
            return
        if got.total is not None:
            remaining = got.total - got.size
        else:
            spread = max((got.last - got.first).total_seconds(), 1.0)
            remaining = got.size / spread * seconds
        parts = min(workers, math.ceil(remaining / self.config.page_size / PAGES_PER_PARTITION), seconds)
        if parts < 2:
            self._put(("plan", job, []))
            return
        width = seconds // parts
        bounds = [start + timedelta(seconds=width * k) for k in range(1, parts)]
        with job.lock:
            job.upper = bounds[0] - ONE_SECOND
        new_jobs = []
        for k, lower in enumerate(bounds):
            upper = bounds[k + 1] - ONE_SECOND if k + 1 < len(bounds) else None
            new_jobs.append(Job(job.run, lower=lower, upper=upper, density=remaining / max(seconds, 1)))
        self._put(("plan", job, new_jobs))


@dataclass
class _Read:
    """What a worker keeps of a page: its records as bytes to write, and where the scan goes next."""

    data: bytes = b""
    count: int = 0  # records in data
    has_more: bool = False
    size: int = 0  # records the store sent
    total: Optional[int] = None
    first: Optional[datetime] = None  # date_modified of the first and last record
    last: Optional[datetime] = None
    ids_at_last: list = field(default_factory=list)
    drain: bool = False  # the whole page shares one second
    last_id: Optional[int] = None
    cursor: Optional[str] = None


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


class _Stopped(Exception):
    """Raised in a worker when the sync is stopping."""


def _modified_moments(stream, records, lower, upper):
    """The records' date_modified as datetimes, checked to be in order and inside [lower, upper]."""
    key = stream.replication_key
    try:
        moments = [parse_datetime(record[key]) for record in records]
    except (KeyError, TypeError, BadDate):
        raise ApiError(f"{stream.name}: the store returned a record without a readable {key}.") from None
    previous = lower
    for moment in moments:
        if moment < previous or (upper is not None and moment > upper):
            raise ApiError(
                f"{stream.name}: the store returned records outside the asked {key} range or out of order; "
                "stopping rather than risk a gap."
            )
        previous = moment
    return moments
