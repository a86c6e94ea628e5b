"""The lossless scan: how one range of a stream is read completely. Nothing else lives here.

Each scan is a generator that fetches pages through a `source` (which owns HTTP, encoding and
pacing), hands out the records it has not handed out before, and yields one Read per page with
the point up to which the range is now read. The caller writes each Read before it resumes the
generator, and may stop it between pages (the range keeps its position, so it can go on later).

What a scan guarantees. Every record whose key lies in the range for the whole scan is handed
out at least once; a record edited while we page moves to a later date_modified and is handed
out by whichever scan covers that date (the open-ended range always covers "now"). Re-reads
happen only at the second the scan stands on, and are skipped by id.

  - modified_range: one [lower, upper] range of date_modified, keyset style. Each request asks
    for the first page at or after `position` (the newest date_modified handed out so far) and
    skips the ids already handed out at that second. A page that is all one second (a bulk
    import) is followed by a read of that second alone in id order (`one_second`), after which
    the scan moves to the next second.
  - id_order: a whole table, or one second, in id order with the stream's keyset (min_id,
    id:greater or the customers' after cursor), never by page number.
  - paged_table: a table whose endpoint has page numbers only, read again until two reads agree.
  - modified_window: the same for [bookmark, sync start] of date_modified, where an endpoint
    filters on the date but cannot sort by it; with a cursor, one read in id order instead; for
    a list kept per record of another (price-list records), under each of those records.
  - single_record: a stream that comes whole in one answer (one object, or a short list).
  - created_window: an insert-only stream (refunds) over [lower, upper] of its creation date,
    by page number: the only paging its endpoint has. That is safe because the endpoint lists
    in ascending id order (documented) and has no delete, so new records only add pages at the
    end; the scan checks the order on every page, and upper is the sync's start, so what is
    created meanwhile waits for the next run.

What a scan assumes of the API, and checks on every page (a page that breaks one stops the sync
with one sentence, rather than risk a gap): dates carry whole seconds; a list sorted by
date_modified comes in that order and inside the asked range; a list read by id comes in
ascending id order after the asked id; a page that says there is more gives a way to ask for it.
"""
import bisect
import itertools
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Optional

from tap_bigcommerce.errors import ApiError
from tap_bigcommerce.streams import CURSOR, ID_GREATER, MIN_ID, STREAMS_BY_NAME
from tap_bigcommerce.transform import BadDate, format_datetime, parse_datetime

LOGGER = logging.getLogger(__name__)
ONE_SECOND = timedelta(seconds=1)


@dataclass
class Range:
    """One range of a stream and where its scan stands; the lock guards lower/upper/position."""

    lower: Optional[datetime] = None
    upper: Optional[datetime] = None  # None: open-ended (up to now, and what is edited meanwhile)
    last_id: Optional[int] = None  # full-table scans: the last id handed out
    position: Optional[datetime] = None  # where the next request starts (inclusive)
    seen: set = field(default_factory=set)  # ids already handed out at the second `position`
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@dataclass
class Read:
    """What a scan keeps of a page: its new records as bytes to write, and where the scan goes next."""

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
    first_id: Optional[int] = None
    cursor: Optional[str] = None
    progress: object = None  # how far the range is read once this page is written
    ordered: bool = False  # a page in date_modified order (what the scheduler learns from)
    upper: Optional[datetime] = None  # the range's upper bound when the page was asked for
    stuck: bool = False  # a full page of records from before the range: nothing to hand out
    keys: list = field(default_factory=list)  # ids of the records in data (kept only with detect_deletions)


def modified_range(source, job):
    """Read [job.lower, job.upper] in date_modified order, keyset style; yields a Read per page."""
    stream = source.stream_of(job)
    if job.position is None:
        with job.lock:
            job.position = job.lower
    widen = True
    while True:
        with job.lock:
            lower, upper = job.position, job.upper
        params = dict(stream.sort_by_modified)
        params.update(date_params(stream, lower, upper, widen))
        got = source.fetch(job, params, _date_page_reader(source, job, stream, lower, upper), by_id=False)
        # A full page of nothing but the second before `lower` (already written) proves the
        # store's lower bound inclusive: the same request without widening reads on from `lower`.
        if got.stuck and not widen:
            raise ApiError(f"{stream.name}: the store returned records from before the asked date; "
                           "stopping rather than risk a gap.")
        widen = not got.stuck
        if got.stuck:
            continue
        if got.drain:
            yield from _drain(source, job, stream, got, lower)
            continue
        got.progress, got.ordered, got.upper = got.last, True, upper
        if got.last is not None:
            if got.last != lower:
                job.seen = set()
            job.seen.update(got.ids_at_last)
            with job.lock:
                job.position = got.last
        yield got
        if not got.has_more:
            return


def _date_page_reader(source, job, stream, lower, upper):
    """The function that turns one date-ordered page into a Read (run while it is decoded)."""
    seen = job.seen

    def read(page):
        records, has_more = page.records, page.has_more
        moments = moments_of(stream, records, lower - ONE_SECOND, upper and upper + ONE_SECOND)
        # The request was widened by a second each way: what lies before `lower` is written already.
        before = bisect.bisect_left(moments, lower)
        records, moments = records[before:], moments[before:]
        total = None if page.total is None else page.total - before
        with job.lock:
            if job.upper is not None and moments and moments[-1] > job.upper:
                # Past the range's end (the widened second, or a part another range took while the
                # page was in flight): keep our part; the rest belongs to another range or none.
                keep = bisect.bisect_right(moments, job.upper)
                records, moments, has_more = records[:keep], moments[:keep], False
            if moments:
                # From here on a split may only cut above what this page hands out.
                job.position = max(job.position, moments[-1])
        if has_more and not moments:
            return Read(stuck=True)
        if has_more and moments[0] == moments[-1]:
            return Read(size=len(records), first=moments[0], last=moments[0], drain=True,
                        ids_at_last=[r.get("id") for r in records])
        fresh = [r for r, moment in zip(records, moments) if moment != lower or r.get("id") not in seen]
        last = moments[-1] if moments else None
        return Read(source.encode(job, fresh), len(fresh), has_more, len(records), total,
                    moments[0] if moments else None, last,
                    [r.get("id") for r, moment in zip(records, moments) if moment == last])

    return read


def _drain(source, job, stream, got, lower):
    """Read one second alone in id order, then move the range's position past it.

    The page that led here showed a full page of records at that second: a read of the second
    that finds none of them means the store's date filter does not do what the scan needs.
    """
    second = got.first
    with job.lock:
        job.position = second
    skip = job.seen if second == lower else frozenset()
    found = set()
    for read in id_order(source, job, date_params(stream, second, second), None, skip, second=second):
        found.update(read.ids_at_last)
        yield read
    if not found.intersection(got.ids_at_last):
        raise ApiError(
            f"{stream.name}: the store listed {len(got.ids_at_last)} records at {format_datetime(second)} "
            "but returned none of them when asked for that second alone; stopping rather than risk a gap."
        )
    job.seen = set()
    with job.lock:
        job.position = second + ONE_SECOND


def whole_table(source, job):
    """Read a full-table stream in id order after job.last_id; yields a Read per page."""
    yield from id_order(source, job, {}, job.last_id, frozenset())


def id_order(source, job, base_params, last_id, skip, second=None, keep=None):
    """Read in id order with the stream's keyset, after last_id (a whole table, one second, or a
    date window: `keep` picks the records of a page inside it)."""
    stream = source.stream_of(job)
    params = dict(stream.sort_by_id)
    params.update(base_params)
    cursor = None
    while True:
        query = dict(params)
        query.update(_after(stream, last_id, cursor))
        got = source.fetch(job, query, _id_page_reader(source, job, stream, last_id, skip, second, keep), by_id=True)
        if second is not None:
            got.progress = second
        else:
            got.progress = got.last_id if got.last_id is not None else last_id
        yield got
        if not got.has_more or got.last_id is None:
            return
        last_id, cursor = got.last_id, got.cursor
        if stream.id_keyset == CURSOR and not cursor:
            raise ApiError(f"{stream.name}: the store gave no cursor to continue from; stopping rather than risk a gap.")


def _after(stream, last_id, cursor):
    """The keyset parameter that asks for the records after the last one read."""
    if stream.id_keyset == CURSOR:
        return {"after": cursor} if cursor else {}
    if last_id is None:
        return {}
    return {"min_id": last_id + 1} if stream.id_keyset == MIN_ID else {ID_GREATER: last_id}


def _id_page_reader(source, job, stream, last_id, skip, second, keep):
    """The function that turns one id-ordered page into a Read (run while it is decoded)."""

    def read(page):
        ids = [record.get("id") for record in page.records]
        if any(not isinstance(i, int) for i in ids) or ids != sorted(set(ids)) or (
            last_id is not None and stream.id_keyset != CURSOR and ids and ids[0] <= last_id
        ):
            raise ApiError(f"{stream.name}: the store returned records out of id order; "
                           "stopping rather than risk a gap.")
        records = page.records
        if second is not None:
            # The request was widened by a second each way: keep the asked second alone.
            moments = moments_of(stream, records, second - ONE_SECOND, second + ONE_SECOND, ordered=False)
            records = [record for record, moment in zip(records, moments) if moment == second]
        if keep is not None:
            records = keep(records)
        fresh = [record for record in records if record["id"] not in skip]
        return Read(source.encode(job, fresh), len(fresh), page.has_more, len(ids),
                    last_id=ids[-1] if ids else None, cursor=page.end_cursor,
                    ids_at_last=[record["id"] for record in records] if second is not None else [])

    return read


def created_window(source, job):
    """Read [job.lower, job.upper] of an insert-only stream by page number, a few pages at once;
    yields a Read per page. The list says neither how many records nor how many pages it has, so
    the pages out at once reach past the end by up to PREFETCH - 1, which come back empty."""
    stream = source.stream_of(job)
    params = date_params(stream, job.lower, job.upper)
    previous = None
    pages = source.fetch_pages(job, (dict(params, page=n) for n in itertools.count(1)),
                               lambda: _window_reader(source, job, stream))
    try:
        for got in pages:
            if previous is not None and got.first_id is not None and got.first_id <= previous:
                raise _out_of_order(stream)
            previous = got.last_id if got.last_id is not None else previous
            yield got
            if not got.has_more:
                return
    finally:
        pages.close()


def _out_of_order(stream):
    return ApiError(f"{stream.name}: the store's list is not in ascending id order as documented; "
                    "stopping rather than risk a gap between pages.")


def _window_reader(source, job, stream):
    """The function that turns one page of a created window into a Read, checking its id order
    (the order across pages is checked as they are handed out, in page order)."""

    def read(page):
        ids = [record.get("id") for record in page.records]
        if any(not isinstance(rid, int) for rid in ids) or ids != sorted(set(ids)):
            raise _out_of_order(stream)
        moments = moments_of(stream, page.records, job.lower - ONE_SECOND, job.upper + ONE_SECOND, ordered=False)
        fresh = [r for r, moment in zip(page.records, moments) if job.lower <= moment <= job.upper]
        return Read(source.encode(job, fresh), len(fresh), page.has_more, len(ids), last_id=ids[-1] if ids else None,
                    first_id=ids[0] if ids else None)

    return read


PASSES = 5  # reads of a page-numbered table before it is called too busy to read whole


def paged_table(source, job):
    """Read whole a table that has page numbers only (no id keyset; maybe no sort); yields a Read per page.

    A delete while we page moves every later record up, and one may slip onto a page already
    read. So a table that takes more than one page is read again until two reads in a row list
    the same ids: a read that missed a record because of a delete also listed the deleted one,
    which the next read does not. Each record is handed out the first time it is seen.
    """
    yield from _agreed_reads(source, job, {}, None)


def modified_window(source, job):
    """Read [job.lower, job.upper] of date_modified where the endpoint filters on it but cannot
    sort: by page number, read again until two reads agree, as paged_table. upper is the sync's
    start, so a record edited meanwhile leaves the window (it is the next run's) and one created
    meanwhile never enters it: the window only shrinks while we read, which the reads catch.
    A stream with no list of its own (price-list records) has the window read under each record
    of the list it belongs to, listed whole first."""
    stream = source.stream_of(job)

    def inside(records):
        moments = moments_of(stream, records, job.lower - ONE_SECOND, job.upper + ONE_SECOND, ordered=False)
        return [record for record, moment in zip(records, moments) if job.lower <= moment <= job.upper]

    params = date_params(stream, job.lower, job.upper)
    if stream.each:
        owners = STREAMS_BY_NAME[stream.each]
        owner_ids = yield from until_agreed(owners, lambda: _list_ids(source, owners))
        for owner_id in sorted(owner_ids):
            try:
                yield from _agreed_reads(source, job, params, inside, stream.path.format(id=owner_id))
            except ApiError as exc:
                if exc.status != 404:
                    raise
                LOGGER.info("%s: %s %s was deleted while the sync read it", stream.name, owners.name, owner_id)
    elif stream.id_keyset == CURSOR:  # a cursor is a keyset: one read in id order misses nothing
        yield from id_order(source, job, params, None, frozenset(), keep=inside)
    else:
        yield from _agreed_reads(source, job, params, inside)


def _agreed_reads(source, job, params, keep, path=None):
    """Read every page, again until two reads list the same ids; `keep` picks the records a page
    holds for this range (all, when None). `path`: a sub-list of one record, not the stream's own."""
    stream = source.stream_of(job)
    handed = set()

    def read_once():
        listed = set()

        def reader():
            return _paged_reader(source, job, stream, handed, listed, keep)

        got = source.fetch(job, dict(params, page=1), reader(), by_id=True, path=path)
        yield got
        page = 1
        if got.has_more and got.total and got.size:  # the pages the first one says there are, at once
            page = -(-got.total // got.size)
            for got in source.fetch_pages(job, [dict(params, page=n) for n in range(2, page + 1)], reader, path):
                yield got
        while got.has_more:  # more than it said (records added meanwhile): one page at a time
            page += 1
            got = source.fetch(job, dict(params, page=page), reader(), by_id=True, path=path)
            yield got
        return listed, page

    yield from until_agreed(stream, read_once)


def until_agreed(stream, read_once):
    """Run read_once() (a generator that yields its pages' Reads and returns the ids it listed
    and its number of pages) until a read of one page, or two reads in a row that list the same
    ids; returns those ids."""
    previous = None
    for _ in range(PASSES):
        listed, pages = yield from read_once()
        if pages == 1 or listed == previous:
            return listed
        previous = listed
    raise ApiError(f"{stream.name}: the table changed during each of {PASSES} reads by page number, so none can "
                   "be trusted to be whole; stopping rather than risk a gap (run the sync again later).")


def _list_ids(source, owners):
    """One read of the ids of a list by page number (it yields nothing: no record is written)."""
    yield from ()
    return read_ids(owners, source.pages(owners))


def read_ids(stream, pages):
    """The ids on a read's pages, each checked to be a whole number, and how many pages it took
    (what until_agreed's read_once returns)."""
    listed, count = set(), 0
    for page in pages:
        count += 1
        ids = [record.get("id") if isinstance(record, dict) else None for record in page.records]
        if not all(isinstance(rid, int) for rid in ids):
            raise ApiError(f"{stream.name}: the store listed a record without a whole-number id; stopping "
                           "rather than guess which records the list holds.")
        listed.update(ids)
    return listed, count


def _paged_reader(source, job, stream, handed, listed, keep):
    """The function that turns one page of a page-numbered read into a Read of its new records."""

    def read(page):
        ids = [stream.identity(record) for record in page.records]
        if not all(_complete(rid) for rid in ids):
            raise ApiError(f"{stream.name}: the store returned a record without a whole-number or text "
                           f"{' and '.join(stream.key_properties)}; stopping rather than risk a gap.")
        listed.update(ids)
        records = page.records if keep is None else keep(page.records)
        fresh = []
        for record in records:
            rid = stream.identity(record)
            if rid not in handed:
                handed.add(rid)
                fresh.append(record)
        return Read(source.encode(job, fresh), len(fresh), page.has_more, len(ids), page.total)

    return read


def _complete(rid):
    """Whether a record's identity (an id, or a tuple of key values) is made of integers (or text,
    as a price record's currency)."""
    return all(isinstance(part, int) or (isinstance(part, str) and part)
               for part in (rid if isinstance(rid, tuple) else (rid,)))


def single_record(source, job):
    """Read a stream that comes whole in one answer (the store's settings, the order statuses);
    yields the one Read."""
    stream = source.stream_of(job)

    def read(page):
        if any(not isinstance(record, dict) or record.get(key) in (None, "")
               for record in page.records for key in stream.key_properties):
            raise ApiError(f"{stream.name}: the store's answer has a record without its "
                           f"{' and '.join(stream.key_properties)}; stopping.")
        if page.has_more:
            raise ApiError(f"{stream.name}: the store says there is more than one page, but this endpoint takes no "
                           "page parameter; stopping rather than risk a gap.")
        return Read(source.encode(job, page.records), len(page.records), False, len(page.records))

    yield source.fetch(job, {}, read, by_id=True)


def date_params(stream, lower, upper, widen_lower=True):
    """The query parameters for date_modified in [lower, upper] (upper None: no upper bound).

    BigCommerce does not promise whether its date bounds are inclusive (the customers reference
    says "after" and "before"), so each bound is widened by a second, which reads the same
    records either way; the scan keeps the exact range itself.
    """
    dates = stream.date_filter
    params = {dates.min: (lower - ONE_SECOND if widen_lower else lower).strftime(dates.format)}
    if upper is not None:
        params[dates.max] = (upper + ONE_SECOND).strftime(dates.format)
    return params


def moments_of(stream, records, lower, upper, ordered=True):
    """The records' date_modified as datetimes, checked to be inside [lower, upper] (and in order)."""
    key = stream.replication_key
    try:
        moments = [parse_datetime(record[key]) for record in records]
    except (KeyError, TypeError, AttributeError, BadDate):
        raise _bad_date(stream, records) from None
    previous = lower
    for moment in moments:
        if moment < previous or (upper is not None and moment > upper):
            raise ApiError(
                f"{stream.name}: the store returned records outside the asked {key} range or out of order; "
                "stopping rather than risk a gap."
            )
        if ordered:
            previous = moment
    return moments


def _bad_date(stream, records):
    """The error for the first record whose replication key is missing or not a date-time."""
    key = stream.replication_key
    for record in records:
        try:
            parse_datetime(record[key])
        except (KeyError, TypeError, AttributeError, BadDate):
            value = record.get(key) if isinstance(record, dict) else None
            record_id = record.get("id") if isinstance(record, dict) else None
            return ApiError(f"{stream.name}: the store returned record {record_id!r} with {key} {value!r}, "
                            "which is not a date-time; stopping rather than guess where it belongs.")
    return ApiError(f"{stream.name}: the store returned a record without a readable {key}.")
