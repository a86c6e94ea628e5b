"""The writer and state keeper: the main thread's job. Nothing else writes to stdout or state.

Pages are written in the order their ranges hand them over, and STATE follows every page, after
the records it covers, so a sync killed at any moment resumes from its last STATE line. The
bookmark rule of each stream kind lives here:

  - incremental: the bookmark is the newest date_modified below which every record of this run
    has been written (the watermark): the first range that has not finished holds it back,
    however far later ranges have got. The next run starts at it, inclusive. While ranges above
    it are read in parallel, the bookmark also lists under "ranges" the date ranges not yet known
    to be written (the last one open-ended), so a killed sync resumes with those alone and
    re-reads about a page per range, not everything after the slowest one. Each range counts as
    written from its lower bound up to (not including) the second of its newest written record,
    or whole once it is done; the open-ended range never counts as whole, since records edited
    after it ends land above it.
  - full table: while the table is read, the state holds the table version and the last id
    written, so a killed sync resumes after it with the same version; ACTIVATE_VERSION ends a
    finished read (and also starts the very first one, so the table exists while it fills).
    A table read by page numbers has no last id to resume after: a killed read starts over; a
    single-record stream (the store) is a table of one row.
"""
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Optional

from tap_bigcommerce import metrics
from tap_bigcommerce.config import bookmark_start, date_ranges
from tap_bigcommerce.deletions import DELETED_AT, Tracker, detects
from tap_bigcommerce.scan import ONE_SECOND
from tap_bigcommerce.streams import CREATED, FULL_TABLE, INCREMENTAL, PAGED, SINGLE, WINDOW
from tap_bigcommerce.transform import format_datetime, parse_datetime

LOGGER = logging.getLogger(__name__)
PROGRESS_EVERY_S = 5.0
SMALL_STATE = 32 * 1024  # bytes of delivered-id ranges a STATE may carry after every page
STATE_SHARE = 20  # beyond that, a STATE once the records written since the last are this many times its size


@dataclass
class StreamRun:
    """What the main thread knows of one stream while it syncs."""

    selection: object  # the stream read (a family's parent, even when only its children are selected)
    transform: object
    emit: bool = True  # whether the stream read is itself written, or only read for its children
    children: list = field(default_factory=list)  # (selection, transform) of the selected CHILD and PER_PARENT streams
    jobs: list = field(default_factory=list)  # the stream's ranges, in range order
    version: Optional[int] = None
    track: bool = False  # whether the ids written are kept, to find deletions (detect_deletions)
    count: int = 0
    counted: int = 0  # records already reported in a record_count metric
    last_progress: float = 0.0

    @property
    def stream(self):
        """The stream's row."""
        return self.selection.stream

    @property
    def selections(self):
        """Every stream written from this run's pages, the one read first when it is written."""
        return ([self.selection] if self.emit else []) + [selection for selection, _ in self.children]

    def watermark(self):
        """The newest date_modified below which every record of this run has been written."""
        mark = None
        for job in self.jobs:
            if job.emitted_max is not None and (mark is None or job.emitted_max > mark):
                mark = job.emitted_max
            if not job.done:
                break
        return mark


class StateKeeper:
    """Writes pages and keeps the state: bookmarks move only after the records they cover."""

    def __init__(self, state, writer, config, now):
        self.now = now
        self.state = state
        self.state.setdefault("bookmarks", {})
        self.tracker = Tracker(self.state, config.detect_deletions)
        self._since_state = 0  # bytes of records written since the last STATE
        if self.state.pop("currently_syncing", None) is not None:
            # Streams sync side by side here, so no single stream is "the" one being synced,
            # and a stale name would only mislead whoever reads the state next.
            LOGGER.info("The state's currently_syncing is dropped: this tap syncs its streams together.")
        self.writer = writer
        self.config = config

    def open(self, run):
        """Write the stream's SCHEMA; returns the ranges to start with (Range keyword arguments)."""
        starts = _rule(run).begin(self, run)
        if self.tracker.enabled and run.emit and detects(run.stream):
            whole = run.stream.kind in (FULL_TABLE, PAGED)
            self.tracker.follow(run.stream, fresh_read=whole and starts[0].get("last_id") is None,
                                synced_before=bool(self.peek(run)))
            run.track = True
        for selection in run.selections:
            stream = selection.stream
            self.writer.schema(stream.name, selection.schema, list(stream.key_properties),
                               [stream.replication_key] if stream.replication_key else None)
        _rule(run).opened(self, run)
        return starts

    def page(self, run, job, data, count, progress, keys=()):
        """Write one page's records, then the STATE that covers them (and their ids, where kept).

        While the delivered-id sets are large (detect_deletions, a first sync delivering ids out of
        order), a STATE follows a page only once the records written since the last one are
        STATE_SHARE times its size: a kill then re-reads a few more pages, and the STATEs stay a
        small part of the output."""
        self.writer.write(data)
        self._since_state += len(data)
        if run.track:
            self.tracker.seen(run.stream, keys)
        run.count += count
        _rule(run).written(self, run, job, progress)
        size = self.tracker.size()
        if size <= SMALL_STATE or self._since_state >= STATE_SHARE * size:
            self.checkpoint()
        if time.monotonic() - run.last_progress >= PROGRESS_EVERY_S:
            run.last_progress = time.monotonic()
            self._report(run, f"{run.count} records so far")

    def range_done(self, run):
        """A range finished: it may be what held the bookmark back, or the stream's last."""
        rule = _rule(run)
        moved = rule.advance(self, run)
        if all(job.done for job in run.jobs):
            rule.finish(self, run)
            self.checkpoint()
            self._report(run, f"done, {run.count} records")
        elif moved:
            self.checkpoint()

    def deleted(self, run, ids):
        """Write a record with _sdc_deleted_at for each id the store no longer has; they leave the
        delivered set (the STATE that follows says so)."""
        if not ids:
            return
        moment = format_datetime(self.now())
        records = [{run.stream.key: rid, DELETED_AT: moment} for rid in ids]
        self.writer.write(self.writer.record_lines(run.stream.name, records, moment, run.version))
        self.tracker.forget(run.stream, ids)
        shown = ", ".join(map(str, ids[:10])) + (", …" if len(ids) > 10 else "")
        LOGGER.info("%s: %d delivered records are no longer in the store (ids %s)", run.stream.name, len(ids), shown)

    def checkpoint(self):
        """A STATE with everything written so far (also the final one)."""
        self.tracker.snapshot()
        self.writer.state(self.state)
        self._since_state = 0

    def bookmark(self, run):
        """The bookmark entry the run keeps (its first written stream's), created if need be."""
        return self.state["bookmarks"].setdefault(run.selections[0].stream.name, {})

    def peek(self, run):
        """The run's bookmark entry, without creating it."""
        return self.state["bookmarks"].get(run.selections[0].stream.name, {})

    def share(self, run):
        """Copy the run's bookmark to every other stream written from its pages (they move together)."""
        entry = self.bookmark(run)
        for selection in run.selections[1:]:
            self.state["bookmarks"][selection.stream.name] = dict(entry)

    def family_entry(self, run):
        """The bookmark a run starts from: its streams' common one, else the oldest (a stream newly
        selected beside the others starts them all from its own start)."""
        bookmarks = self.state["bookmarks"]
        entries = [bookmarks.get(selection.stream.name, {}) for selection in run.selections]
        if all(entry == entries[0] for entry in entries):
            return entries[0]
        key = run.stream.replication_key
        dates = [entry.get(key) for entry in entries]
        LOGGER.info("%s: its streams' bookmarks differ; starting from the oldest", run.stream.name)
        return {} if None in dates else {key: min(dates, key=parse_datetime)}

    def _report(self, run, what):
        """A progress line and a Singer record_count metric for the records since the last one."""
        LOGGER.info("%s: %s, bookmark %s", run.stream.name, what, _rule(run).describe(self, run))
        metrics.record_count(run.stream.name, run.count - run.counted)
        run.counted = run.count


class _DateBookmark:
    """Incremental streams: the bookmark is the watermark of date_modified."""

    @staticmethod
    def begin(keeper, run):
        """The ranges left by a killed sync, else one range from the bookmark (or start_date)."""
        entry = keeper.family_entry(run)
        if not entry.get("ranges"):
            return [{"lower": bookmark_start(entry, run.stream, keeper.config)}]
        LOGGER.info("%s: resuming the %d date ranges an unfinished sync left", run.stream.name, len(entry["ranges"]))
        starts = []
        for lower, upper in date_ranges(run.stream.name, entry["ranges"]):
            if starts and lower > starts[-1]["upper"] + ONE_SECOND:
                # What lies between two ranges was written: a range already done.
                starts.append({"lower": starts[-1]["upper"] + ONE_SECOND, "upper": lower - ONE_SECOND, "done": True})
            starts.append({"lower": lower, "upper": upper})
        return starts

    @staticmethod
    def opened(keeper, run):
        pass

    @classmethod
    def written(cls, keeper, run, job, progress):
        if progress is not None:
            job.emitted_max = progress if job.emitted_max is None else max(job.emitted_max, progress)
        cls.advance(keeper, run)

    @staticmethod
    def advance(keeper, run):
        """Move the bookmark up to the watermark, and note the ranges left; True if either changed."""
        entry = keeper.bookmark(run)
        before = dict(entry)
        mark = run.watermark()
        key = run.stream.replication_key
        current = entry.get(key)
        if mark is not None and (current is None or parse_datetime(current) < mark):
            entry[key] = format_datetime(mark)
        floor = run.jobs[0].lower
        if entry.get(key):
            floor = max(floor, parse_datetime(entry[key]))
        left = _unwritten(run.jobs, floor)
        if len(left) > 1:
            entry["ranges"] = [[format_datetime(lower), upper and format_datetime(upper)] for lower, upper in left]
        else:
            entry.pop("ranges", None)
        keeper.share(run)
        return entry != before

    @staticmethod
    def finish(keeper, run):
        keeper.bookmark(run).pop("ranges", None)
        keeper.share(run)

    @staticmethod
    def describe(keeper, run):
        return keeper.peek(run).get(run.stream.replication_key) or "none yet"


class _WholeFromStart(_DateBookmark):
    """Incremental streams the catalog asks to read whole (replication-method FULL_TABLE): every
    run reads from start_date, and the stream's bookmark is left as it was."""

    @staticmethod
    def begin(keeper, run):
        return [{"lower": keeper.config.start_date}]

    @staticmethod
    def advance(keeper, run):
        return False

    @staticmethod
    def finish(keeper, run):
        pass

    @staticmethod
    def describe(keeper, run):
        return "none (read whole from start_date)"


class _Window:
    """Windows up to the run's start (streams filtered but not sorted by date_modified): each run
    reads from the bookmark up to its own start, which becomes the bookmark once the window is
    read whole; a killed run reads its window again."""

    @staticmethod
    def lookback(keeper):
        """How far before the bookmark a run starts."""
        return timedelta(0)

    @classmethod
    def begin(cls, keeper, run):
        entry = keeper.peek(run)
        lower = keeper.config.start_date
        if entry.get(run.stream.replication_key):
            lower = max(lower, parse_datetime(entry[run.stream.replication_key]) - cls.lookback(keeper))
        return [{"lower": lower, "upper": keeper.now().replace(microsecond=0)}]

    @staticmethod
    def opened(keeper, run):
        pass

    @staticmethod
    def written(keeper, run, job, progress):
        pass

    @staticmethod
    def advance(keeper, run):
        return False

    @staticmethod
    def finish(keeper, run):
        keeper.bookmark(run)[run.stream.replication_key] = format_datetime(run.jobs[0].upper)

    @staticmethod
    def describe(keeper, run):
        return keeper.peek(run).get(run.stream.replication_key) or "none yet"


class _CreatedWindow(_Window):
    """Insert-only streams by creation date (refunds): a window that starts a lookback before
    the bookmark, so what settles after it is created is read again."""

    @staticmethod
    def lookback(keeper):
        return keeper.config.lookback


class _TableVersion:
    """Full-table streams: a version per read, and the last id written while it is mid-read. The
    streams written from the same pages (a table and its sub-resources) share the version."""

    @staticmethod
    def begin(keeper, run):
        entries = [keeper.state["bookmarks"].get(selection.stream.name, {}) for selection in run.selections]
        bookmark = entries[0]
        # A stream newly selected beside a half-read table has none of the rows already read.
        resumed = "version" in bookmark and "last_id" in bookmark and all(entry == bookmark for entry in entries)
        run.version = bookmark["version"] if resumed else int(time.time() * 1000)
        if resumed:
            LOGGER.info("%s: resuming the full-table sync after id %s", run.stream.name, bookmark["last_id"])
        return [{"last_id": bookmark["last_id"] if resumed else None}]

    @staticmethod
    def opened(keeper, run):
        for selection in run.selections:
            if "version" not in keeper.state["bookmarks"].get(selection.stream.name, {}):
                # The first sync ever activates its version at once, so the table exists even
                # while it fills; later syncs keep the old version visible until theirs is whole.
                keeper.writer.activate_version(selection.stream.name, run.version)

    @staticmethod
    def written(keeper, run, job, progress):
        if progress is not None:
            for selection in run.selections:
                keeper.state["bookmarks"][selection.stream.name] = {"version": run.version, "last_id": progress}

    @staticmethod
    def advance(keeper, run):
        return False

    @staticmethod
    def finish(keeper, run):
        if run.track:  # before the version is activated: the deleted rows go with the old version
            keeper.deleted(run, keeper.tracker.table_read(run.stream))
        for selection in run.selections:
            keeper.writer.activate_version(selection.stream.name, run.version)
            keeper.state["bookmarks"][selection.stream.name] = {"version": run.version}

    @staticmethod
    def describe(keeper, run):
        entry = keeper.peek(run)
        return f"id {entry['last_id']}" if "last_id" in entry else "none (full table)"


def _unwritten(jobs, floor):
    """The date ranges at or above `floor` not known to be written: [(lower, upper or None)].

    Ranges are whole seconds, both ends inclusive; the last one is always open-ended.
    """
    written = []
    for index, job in enumerate(jobs):
        end = None  # the first second not known to be written
        if job.done and job.upper is not None and index < len(jobs) - 1:
            end = job.upper + ONE_SECOND
        elif job.emitted_max is not None:
            end = job.emitted_max
        if end is not None and end > job.lower:
            written.append((job.lower, end))
    left, cursor = [], floor
    for lower, end in sorted(written):
        if end <= cursor:
            continue
        if lower > cursor:
            left.append((cursor, lower - ONE_SECOND))
        cursor = end
    left.append((cursor, None))
    return left


_RULES = {INCREMENTAL: _DateBookmark, FULL_TABLE: _TableVersion, CREATED: _CreatedWindow, PAGED: _TableVersion,
          SINGLE: _TableVersion, WINDOW: _Window}


def _rule(run):
    """The bookmark rule of a stream's kind, or of the full read its catalog entry asks for."""
    return _WholeFromStart if run.selection.full_table and run.stream.kind == INCREMENTAL else _RULES[run.stream.kind]
