"""The writer and state keeper: the main thread's job. Nothing else writes to stdout or state.

Pages are written in the order their ranges hand them over, and STATE follows every page, after
the records it covers, so a sync killed at any moment resumes from its last STATE line. The
bookmark rule of each stream kind lives here:

  - incremental: the bookmark is the newest date_modified below which every record of this run
    has been written (the watermark): the first range that has not finished holds it back,
    however far later ranges have got. The next run starts at it, inclusive.
  - full table: while the table is read, the state holds the table version and the last id
    written, so a killed sync resumes after it with the same version; ACTIVATE_VERSION ends a
    finished read (and also starts the very first one, so the table exists while it fills).
"""
import logging
import time
from dataclasses import dataclass, field
from typing import Optional

from tap_bigcommerce import metrics
from tap_bigcommerce.config import bookmark_start
from tap_bigcommerce.streams import FULL_TABLE, INCREMENTAL
from tap_bigcommerce.transform import format_datetime, parse_datetime

LOGGER = logging.getLogger(__name__)
PROGRESS_EVERY_S = 5.0


@dataclass
class StreamRun:
    """What the main thread knows of one stream while it syncs."""

    selection: object
    transform: object
    jobs: list = field(default_factory=list)  # the stream's ranges, in range order
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


class StateKeeper:
    """Writes pages and keeps the state: bookmarks move only after the records they cover."""

    def __init__(self, state, writer, config):
        self.state = state
        self.state.setdefault("bookmarks", {})
        self.writer = writer
        self.config = config

    def open(self, run):
        """Write the stream's SCHEMA; returns where its first range starts (Range keyword arguments)."""
        stream, selection = run.stream, run.selection
        self.writer.schema(stream.name, selection.schema, [stream.key],
                           [stream.replication_key] if stream.replication_key else None)
        return _RULES[stream.kind].begin(self, run)

    def page(self, run, job, data, count, progress):
        """Write one page's records, then the STATE that covers them."""
        self.writer.write(data)
        run.count += count
        _RULES[run.stream.kind].written(self, run, job, progress)
        self.writer.state(self.state)
        if time.monotonic() - run.last_progress >= PROGRESS_EVERY_S:
            run.last_progress = time.monotonic()
            self._report(run, f"{run.count} records so far")

    def range_done(self, run):
        """A range finished: it may be what held the bookmark back, or the stream's last."""
        rule = _RULES[run.stream.kind]
        moved = rule.advance(self, run)
        if all(job.done for job in run.jobs):
            rule.finish(self, run)
            self.writer.state(self.state)
            self._report(run, f"done, {run.count} records")
        elif moved:
            self.writer.state(self.state)

    def close(self):
        """The final STATE."""
        self.writer.state(self.state)

    def bookmark(self, run):
        """The stream's bookmark entry, created if need be."""
        return self.state["bookmarks"].setdefault(run.stream.name, {})

    def _report(self, run, what):
        """A progress line and a Singer record_count metric for the records since the last one."""
        LOGGER.info("%s: %s, bookmark %s", run.stream.name, what, _RULES[run.stream.kind].describe(self, run))
        metrics.record_count(run.stream.name, run.count - run.counted)
        run.counted = run.count


class _DateBookmark:
    """Incremental streams: the bookmark is the watermark of date_modified."""

    @staticmethod
    def begin(keeper, run):
        return {"lower": bookmark_start(keeper.state, run.stream, keeper.config)}

    @staticmethod
    def written(keeper, run, job, progress):
        if progress is not None:
            job.emitted_max = progress if job.emitted_max is None else max(job.emitted_max, progress)
        _DateBookmark.advance(keeper, run)

    @staticmethod
    def advance(keeper, run):
        """Move the bookmark up to the watermark; True if it moved."""
        mark = run.watermark()
        if mark is None:
            return False
        key = run.stream.replication_key
        entry = keeper.bookmark(run)
        current = entry.get(key)
        if current is None or parse_datetime(current) < mark:
            entry[key] = format_datetime(mark)
            return True
        return False

    @staticmethod
    def finish(keeper, run):
        pass

    @staticmethod
    def describe(keeper, run):
        return keeper.state["bookmarks"].get(run.stream.name, {}).get(run.stream.replication_key) or "none yet"


class _TableVersion:
    """Full-table streams: a version per read, and the last id written while it is mid-read."""

    @staticmethod
    def begin(keeper, run):
        stream = run.stream
        bookmark = keeper.state["bookmarks"].get(stream.name, {})
        resumed = "version" in bookmark and "last_id" in bookmark
        run.version = bookmark["version"] if resumed else int(time.time() * 1000)
        if resumed:
            LOGGER.info("%s: resuming the full-table sync after id %s", stream.name, bookmark["last_id"])
        elif "version" not in bookmark:
            # The first sync ever activates its version at once, so the table exists even
            # while it fills; later syncs keep the old version visible until theirs is whole.
            keeper.writer.activate_version(stream.name, run.version)
        return {"last_id": bookmark["last_id"] if resumed else None}

    @staticmethod
    def written(keeper, run, job, progress):
        if progress is not None:
            keeper.state["bookmarks"][run.stream.name] = {"version": run.version, "last_id": progress}

    @staticmethod
    def advance(keeper, run):
        return False

    @staticmethod
    def finish(keeper, run):
        keeper.writer.activate_version(run.stream.name, run.version)
        keeper.state["bookmarks"][run.stream.name] = {"version": run.version}

    @staticmethod
    def describe(keeper, run):
        entry = keeper.state["bookmarks"].get(run.stream.name, {})
        return f"id {entry['last_id']}" if "last_id" in entry else "none (full table)"


_RULES = {INCREMENTAL: _DateBookmark, FULL_TABLE: _TableVersion}
