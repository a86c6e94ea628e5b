"""The scheduler: which range each worker reads next, and how many are read at once.

It owns partitions, splitting, parking and quota planning, and never touches a record, the
state or stdout: it only cuts ranges (under each range's lock, never below what its scan has
handed out) and decides when a range starts. Whatever it decides, every range the stream needs
is read by exactly one scan (scan.py), so a scheduling mistake costs time, never a record.

Partitions. After a stream's first page the scheduler estimates how many pages remain and cuts
the rest of the date range into partitions (the last one open-ended, so records edited during
the sync land in it) that workers scan in parallel, all drawing on the client's one Pacer. An
idle worker takes the back part of the longest range still being read, cut where the range's
owner keeps whole pages.

Under a quota. Until the end is in sight, only as many ranges are read at once as spend a
window's quota in two thirds of it: more would only wait for the window, and every range ends
with a short page. A range whose next page is its last (v3 counts what is left; for v2 it is
estimated) puts that page aside and its worker takes other work, so the early windows are spent
on full pages. When all that is left fits in one window, the pages put aside all go at once,
ranges of three pages or more are split so that no long chain of requests remains, and pages
whose range has more to come are decoded first. A page waits at most PARK_LIMIT_S, because the
bookmark cannot pass it.
"""
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional

from tap_bigcommerce.scan import ONE_SECOND, Range

LOGGER = logging.getLogger(__name__)
PAGES_PER_PARTITION = 20  # fewer pages than this per partition wastes requests on short last pages
MIN_PAGES_TO_SPLIT = 2  # a running range is split for an idle worker only if this much is left
PAGE_SLACK = 0.1  # a split leaves the older job this share of each page unfilled, for estimate error
END_PAGES_TO_SPLIT = 3  # once the end is in sight, a range this long is split (a chain of 3 requests is too long)
QUOTA_SPREAD = 2 / 3  # until the end is in sight, ranges enough to spend a window's quota in this share of it
PARK_LIMIT_S = 60.0  # a range's last page waits at most this long for the end of the sync (the bookmark waits too)
UNKNOWN_PAGES = 1_000_000  # the decoding priority of a page whose job cannot tell what it has left


@dataclass(eq=False)
class Job(Range):
    """One worker's share of a stream (a Range), with what the scheduler estimates of it."""

    run: object = None  # the stream's run (state.StreamRun)
    plan: bool = False  # the stream's first job: it cuts the rest of the range after page one
    emitted_max: Optional[datetime] = None  # the newest date_modified written (kept by the state keeper)
    done: bool = False
    splittable: bool = False  # set by the main thread once no one else will change the range
    density: Optional[float] = None  # records per second of date_modified in the newest full page
    counted: Optional[tuple] = None  # v3 counts: (records left, upper and position they were counted at)
    parked_at: Optional[float] = None  # when the job put its last page aside (time.monotonic)
    last_page: bool = False  # taken back from the parked ones: it reads its last page, and does not park again

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
        """The records v3 counted as left, if counted under the current upper bound and position."""
        if self.counted is not None and self.counted[1:] == (self.upper, self.position):
            return self.counted[0]
        return None

    def learn(self, density, counted):
        """What the newest page says of the range ahead."""
        with self.lock:
            self.density, self.counted = density, counted

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
            rest = Job(lower=middle, upper=self.upper, run=self.run, density=density)
            self.upper = middle - ONE_SECOND
            return rest


class Scheduler:
    """Decides which ranges run: `start(job)` hands a range to the worker pool."""

    def __init__(self, config, client, runs, start, now):
        self.config = config
        self.pacer, self.flow = client.pacer, client.flow
        self.runs = runs  # every stream's run; run.jobs is kept in range order
        self._start = start
        self.now = now
        self.pending = 0  # jobs started and neither done nor parked
        self._parked = []  # jobs whose last page waits for the end of the sync
        self._last_pages = 0  # jobs taken back from the parked ones and not done
        self._ending_told = False  # whether the log has said that the end is in sight

    # ---- the main thread -------------------------------------------------------------------

    def submit(self, job):
        """Start a range."""
        if job.lower is not None and not job.plan:
            job.splittable = True
        self.pending += 1
        self._start(job)

    def planned(self, job, new_jobs):
        """The partitions a stream's first job cut from the rest of its range."""
        for new_job in new_jobs:
            job.run.jobs.append(new_job)
            self.submit(new_job)
        job.splittable = True
        if new_jobs:
            LOGGER.info("%s: reading the rest in %d parallel partitions", job.run.stream.name, len(new_jobs) + 1)

    def parked(self, job):
        """A job put its last page aside."""
        self.pending -= 1
        with job.lock:
            job.parked_at = time.monotonic()
        self._parked.append(job)

    def finished(self, job):
        """A job read its whole range."""
        self.pending -= 1
        if job.last_page:
            self._last_pages -= 1
        with job.lock:
            job.done = True

    def rebalance(self):
        """Give idle workers part of the longest range still being read (ranges are rarely even).

        Workers are only as many as _workers() says (the Flow, the quota, the end in sight);
        ranges whose last page was put aside do not count, and when nothing is worth splitting
        an idle worker takes one of those last pages. Only ranges longer than their fair share
        (all the pages left, spread over the workers) are split: a range that ends no later
        than the others gains nothing from a split, and every range's last page is a short
        one, so needless splits cost requests.
        """
        now = self.now().replace(microsecond=0)
        # The end is in sight when all that is left fits in one window of the store's quota: then
        # the last pages put aside go, and ranges are split until none is a long chain of requests.
        ending = self._fits_in_one_window(now)
        workers = self._workers(ending)
        if ending and self._parked:
            if not self._ending_told:  # once: later ranges put aside go as they come
                self._ending_told = True
                LOGGER.info("The rest fits in one window of the store's quota: reading the %d last pages put aside.",
                            len(self._parked))
            while self._parked:
                self._unpark()
        while self._parked and time.monotonic() - self._parked[0].parked_at >= PARK_LIMIT_S:
            self._unpark()  # the bookmark has waited long enough for it
        while self.pending - self._last_pages < workers:
            if not self._split_longest(now, workers, ending):
                if not self._parked:
                    return
                self._unpark()  # nothing worth splitting: an idle worker takes a last page

    def _split_longest(self, now, workers, ending):
        """Start the back part of the longest range, if one is worth splitting; True if it was."""
        candidates = [
            (left[0], run, index, job)
            for run in self.runs
            for index, job in enumerate(run.jobs)
            if (left := job.remaining(now)) and left[1] >= 2
        ]
        fair_share = sum(candidate[0] for candidate in candidates) / workers
        records, run, index, job = max(candidates, key=lambda candidate: candidate[0], default=(0,) * 4)
        page_size = self.config.page_size
        if records < max((END_PAGES_TO_SPLIT if ending else MIN_PAGES_TO_SPLIT) * page_size, fair_share):
            return False
        new_job = job.split(now, page_size)
        if new_job is None:
            return False
        run.jobs.insert(index + 1, new_job)  # keeps run.jobs in range order for the watermark
        LOGGER.debug("%s: an idle worker takes %s to %s", run.stream.name, new_job.lower, new_job.upper or "now")
        self.submit(new_job)
        return True

    def _fits_in_one_window(self, now):
        """Whether the requests left (about) fit in one window of the store's quota."""
        quota = self.pacer.quota
        if quota is None:
            return True
        left = 0
        for run in self.runs:
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
        if ending and self.pacer.waited:
            return self.config.max_requests
        workers = min(self.flow.limit(), self.config.max_workers)
        quota, window_s, request_s = self.pacer.quota, self.pacer.window_s, self.flow.request_s
        if not ending and quota and window_s and request_s:
            workers = min(workers, max(math.ceil(quota * request_s / (window_s * QUOTA_SPREAD)), 2))
        return workers

    def _unpark(self):
        job = self._parked.pop(0)
        with job.lock:
            job.parked_at = None
        job.last_page = True
        self._last_pages += 1
        self.submit(job)

    # ---- worker threads --------------------------------------------------------------------

    def priority(self, job):
        """The pages a job has left: pages of ranges with more to come are decoded first."""
        pages = job.pages_left(self.now(), self.config.page_size)
        return UNKNOWN_PAGES if pages is None else pages

    def after_page(self, job, got):
        """Learn from a date-ordered page once it is handed out; returns (partitions or None, park?).

        Partitions is a list (maybe empty) only after the stream's first job's first page.
        """
        if not got.has_more:
            return None, False
        partitions = None
        if job.plan:
            job.plan = False
            partitions = self._partitions(job, got)
        density = got.size / max((got.last - got.first).total_seconds(), 1.0)
        # v3 counts what matched the request: all of it but this page is left to read, and the
        # next request reads the ids at this page's last second again.
        counted = None
        if got.total is not None:
            counted = (got.total - got.size + len(got.ids_at_last), got.upper, got.last)
        job.learn(density, counted)
        return partitions, job.next_page_is_last(self.now(), self.config.page_size, len(got.ids_at_last))

    def _partitions(self, job, got):
        """After page one, cut the rest of the range into partitions for idle workers."""
        workers = self._workers()
        start = got.last
        end = self.now().replace(microsecond=0)
        seconds = int((end - start).total_seconds())
        if workers < 2 or seconds < 2:
            return []
        if got.total is not None:
            remaining = got.total - got.size
        else:
            spread = max((got.last - got.first).total_seconds(), 1.0)
            remaining = got.size / spread * seconds
        parts = min(workers, math.ceil(remaining / self.config.page_size / PAGES_PER_PARTITION), seconds)
        if parts < 2:
            return []
        width = seconds // parts
        bounds = [start + timedelta(seconds=width * k) for k in range(1, parts)]
        with job.lock:
            job.upper = bounds[0] - ONE_SECOND
        new_jobs = []
        for k, lower in enumerate(bounds):
            upper = bounds[k + 1] - ONE_SECOND if k + 1 < len(bounds) else None
            new_jobs.append(Job(lower=lower, upper=upper, run=job.run, density=remaining / max(seconds, 1)))
        return new_jobs
