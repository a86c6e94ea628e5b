"""Deletions as data: which delivered records the store no longer has (setting detect_deletions).

BigCommerce hard-deletes most records and leaves no trace in its lists. So the tap keeps, per
stream, the set of ids it has delivered, as sorted id ranges in the state (ids are dense
integers: a million ids with a few thousand gaps are a few thousand ranges), and after the
stream is read compares that set with the store:

  - a full table (read whole every run): what the previous read delivered and this one did not
    list is gone; no request beyond the read itself;
  - COUNT_BY_ID (orders, products): one count of the store's records between the smallest and
    largest delivered id. Equal to the set's size: nothing was deleted. Otherwise the range is
    halved at the set's median and each half counted, down to ranges of a page or less, which
    are listed in id order: d deletions among N ids cost about d * log2(N / page) counts;
  - PROBE_BY_ID (customers: an id:in filter, no id range): one count of the whole list; where it
    differs, id:in probes of every delivered id, a page of ids per request;
  - SWEEP (metafields, customer attributes: no id filter at all): one count of the whole list;
    where it differs, the list's ids read whole (by cursor, a keyset: once; by page number: until
    two reads agree, so a record that shifted pages is never taken for deleted).

An id is called deleted only when a listing that covers it (the full read, a range listed in id
order, an id:in probe) does not return it, never from a count alone; counts only say where to
look. A record created and deleted between two runs was never delivered and is never reported;
an id that comes back (a restored channel) is delivered again and rejoins the set. A count that
matches because a record was created below the largest id as another was deleted hides that
deletion until a later run delivers the new record and the counts differ again: later, never lost.

Each deleted id becomes a RECORD with the stream's key and `_sdc_deleted_at` (RFC 3339, UTC),
the column Singer targets use for deletes, and leaves the set.
"""
import bisect
import logging

from tap_bigcommerce.errors import ApiError, InputError
from tap_bigcommerce.scan import read_ids, until_agreed
from tap_bigcommerce.streams import COUNT_BY_ID, CURSOR, FULL_TABLE, ID_GREATER, MIN_ID, PAGED, PROBE_BY_ID

RANGE_BYTES = 16  # about what one [start, end] range takes in a STATE

LOGGER = logging.getLogger(__name__)
DELETED_AT = "_sdc_deleted_at"


def detects(stream):
    """Whether deletions of the stream can be found: a table read whole, or a stream with a way to
    count or probe ids; records keyed by one whole-number id either way."""
    return not stream.keys and stream.key == "id" and (stream.kind in (FULL_TABLE, PAGED) or stream.deletions)


class IdSet:
    """A set of whole-number ids kept as sorted, disjoint, inclusive [start, end] ranges."""

    def __init__(self, ranges=()):
        self.starts, self.ends = [], []
        for start, end in ranges:
            self.starts.append(start)
            self.ends.append(end)

    @classmethod
    def from_state(cls, name, value):
        """The set a state holds for a stream, checked: ascending, apart, whole numbers."""
        problem = InputError(f"The state's deletions entry for {name} is not a list of [from, to] id pairs in order.")
        if not isinstance(value, list):
            raise problem
        previous = None
        for pair in value:
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(i, int) and not isinstance(i, bool)
                                                                      for i in pair) and pair[0] <= pair[1]):
                raise problem
            if previous is not None and pair[0] <= previous + 1:
                raise problem
            previous = pair[1]
        return cls(value)

    def to_state(self):
        """The ranges as the state keeps them."""
        return [[start, end] for start, end in zip(self.starts, self.ends)]

    def __len__(self):
        return sum(end - start + 1 for start, end in zip(self.starts, self.ends))

    def __bool__(self):
        return bool(self.starts)

    def __contains__(self, rid):
        index = bisect.bisect_right(self.starts, rid) - 1
        return index >= 0 and rid <= self.ends[index]

    def add(self, rid):
        """Add one id, joining the ranges it touches."""
        index = bisect.bisect_right(self.starts, rid) - 1
        if index >= 0 and rid <= self.ends[index]:
            return
        joins_left = index >= 0 and self.ends[index] == rid - 1
        joins_right = index + 1 < len(self.starts) and self.starts[index + 1] == rid + 1
        if joins_left and joins_right:
            self.ends[index] = self.ends.pop(index + 1)
            del self.starts[index + 1]
        elif joins_left:
            self.ends[index] = rid
        elif joins_right:
            self.starts[index + 1] = rid
        else:
            self.starts.insert(index + 1, rid)
            self.ends.insert(index + 1, rid)

    def remove(self, rid):
        """Remove one id, splitting its range if need be."""
        index = bisect.bisect_right(self.starts, rid) - 1
        if index < 0 or rid > self.ends[index]:
            return
        start, end = self.starts[index], self.ends[index]
        if start == end:
            del self.starts[index], self.ends[index]
        elif rid == start:
            self.starts[index] = rid + 1
        elif rid == end:
            self.ends[index] = rid - 1
        else:
            self.ends[index] = rid - 1
            self.starts.insert(index + 1, rid + 1)
            self.ends.insert(index + 1, end)

    def ids(self, low=None, high=None):
        """The ids in [low, high] (either bound optional), ascending."""
        for start, end in zip(self.starts, self.ends):
            start = start if low is None else max(start, low)
            end = end if high is None else min(end, high)
            yield from range(start, end + 1)

    def count(self, low, high):
        """How many ids lie in [low, high]."""
        return sum(max(0, min(end, high) - max(start, low) + 1) for start, end in zip(self.starts, self.ends)
                   if end >= low and start <= high)

    def nth(self, low, n):
        """The n-th id (from 0) at or above low, found range by range."""
        for start, end in zip(self.starts, self.ends):
            start = max(start, low)
            if start > end:
                continue
            if n <= end - start:
                return start + n
            n -= end - start + 1
        raise IndexError(n)

    def difference(self, other):
        """The ids in this set and not in `other`, ascending."""
        return [rid for rid in self.ids() if rid not in other]


class Tracker:
    """The main thread's record of delivered ids, kept in the state under "deletions"."""

    def __init__(self, state, enabled):
        self.enabled = enabled
        self.entries = state.setdefault("deletions", {}) if enabled else {}
        self.sets = {}  # stream name -> {"delivered": IdSet, "reading": IdSet}
        self._dirty = set()  # streams whose sets changed since the state last got them
        self.baselines = set()  # streams whose delivered set starts with what the store holds (see follow)

    def follow(self, stream, fresh_read, synced_before=False):
        """Start following a stream; fresh_read: a full table begins a new read (its ids restart).
        A stream read incrementally before its ids were kept (synced_before, and no set yet)
        needs a baseline: the ids the store holds, listed once at the end of this run."""
        entry = self.entries.get(stream.name, {})
        first = synced_before and stream.name not in self.entries and stream.kind not in (FULL_TABLE, PAGED)
        if first or entry.get("baseline") == "pending":  # (pending: a run killed before it got there)
            self.baselines.add(stream.name)
        sets = {part: IdSet.from_state(stream.name, entry.get(part, [])) for part in ("delivered", "reading")}
        if fresh_read:
            sets["reading"] = IdSet()
        self.sets[stream.name] = sets

    def seen(self, stream, keys):
        """Ids written on one page (a full table's go to this read's set)."""
        sets = self.sets[stream.name]
        target = sets["reading"] if stream.kind in (FULL_TABLE, PAGED) else sets["delivered"]
        for rid in keys:
            if isinstance(rid, int) and not isinstance(rid, bool):
                target.add(rid)
        self._dirty.add(stream.name)

    def size(self):
        """About how many bytes the sets take in a STATE (a range is a dozen or two)."""
        return sum(len(ids.starts) for sets in self.sets.values() for ids in sets.values()) * RANGE_BYTES

    def snapshot(self):
        """Put the sets changed since the last snapshot into the state (before a STATE is written)."""
        for name in self._dirty:
            self._save(name)
        self._dirty.clear()

    def table_read(self, stream):
        """A full table was read whole: what the last read had and this one lacks is gone."""
        sets = self.sets[stream.name]
        gone = sets["delivered"].difference(sets["reading"])
        sets["delivered"], sets["reading"] = sets["reading"], IdSet()
        self._save(stream.name)
        return gone

    def start_from(self, stream, listed):
        """The baseline: every id the store holds now was delivered by an earlier run or this one
        (the sync misses nothing); what this run delivered and the store no longer has is gone."""
        delivered = self.sets[stream.name]["delivered"]
        gone = [rid for rid in delivered.ids() if rid not in listed]
        self.sets[stream.name]["delivered"] = IdSet()
        for rid in sorted(listed):
            self.sets[stream.name]["delivered"].add(rid)
        self.baselines.discard(stream.name)
        self._save(stream.name)
        return gone

    def forget(self, stream, ids):
        """Deleted ids leave the set."""
        for rid in ids:
            self.sets[stream.name]["delivered"].remove(rid)
        self._save(stream.name)

    def delivered(self, stream):
        """The ids delivered so far."""
        return self.sets[stream.name]["delivered"]

    def _save(self, name):
        sets = self.sets[name]
        self.entries[name] = {part: ids.to_state() for part, ids in sets.items() if ids}
        if name in self.baselines:
            self.entries[name]["baseline"] = "pending"


class Finder:
    """Finds the deleted ids of a stream read incrementally, through the HTTP client."""

    def __init__(self, client, page_size):
        self.client = client
        self.page_size = page_size
        self.requests = 0

    def gone(self, stream, delivered):
        """The delivered ids the store no longer has (COUNT_BY_ID, PROBE_BY_ID or SWEEP)."""
        if not delivered:
            return []
        if stream.deletions == COUNT_BY_ID:
            low, high = delivered.starts[0], delivered.ends[-1]
            return self._bisect(stream, delivered, low, high, len(delivered))
        if self._count(stream, {}) == len(delivered):
            return []
        if stream.deletions == PROBE_BY_ID:
            return self._probe(stream, delivered)
        return delivered.difference(self._sweep(stream))

    def every_id(self, stream):
        """Every id the stream's list holds now (for a baseline)."""
        if stream.deletions == COUNT_BY_ID:
            return set(self._list(stream, 1, None))
        return self._sweep(stream)

    def _bisect(self, stream, delivered, low, high, expected):
        """Deleted ids in [low, high], where `expected` delivered ids lie."""
        if expected == 0 or self._count(stream, self._id_range(stream, low, high)) == expected:
            return []
        if expected <= self.page_size:
            listed = set(self._list(stream, low, high))
            return [rid for rid in delivered.ids(low, high) if rid not in listed]
        middle = delivered.nth(low, expected // 2 - 1)
        left = delivered.count(low, middle)
        return (self._bisect(stream, delivered, low, middle, left)
                + self._bisect(stream, delivered, middle + 1, high, expected - left))

    def _count(self, stream, params):
        self.requests += 1
        return self.client.count(stream, params)

    @staticmethod
    def _id_range(stream, low, high):
        """The query for ids in [low, high] (high None: no upper bound)."""
        if stream.id_keyset == MIN_ID:
            names = ("min_id", "max_id")
        elif stream.id_keyset == ID_GREATER:
            names = ("id:min", "id:max")
        else:
            raise ValueError(f"{stream.name} has no id range")
        return {name: value for name, value in zip(names, (low, high)) if value is not None}

    def _list(self, stream, low, high):
        """Every id the store has in [low, high], in id order by keyset pages."""
        while True:
            params = dict(stream.sort_by_id, **self._id_range(stream, low, high), limit=self.page_size)
            self.requests += 1
            page = self.client.get_page(stream, params)
            ids = [record.get("id") for record in page.records]
            if any(not isinstance(rid, int) for rid in ids) or ids != sorted(set(ids)) or (ids and ids[0] < low):
                raise ApiError(f"{stream.name}: the store listed an id range out of id order; stopping rather than "
                               "report a record deleted that is not.")
            yield from ids
            if not page.has_more or not ids:
                return
            low = ids[-1] + 1

    def _sweep(self, stream):
        """Every id the list holds now: read once by cursor (a keyset misses nothing), by page
        number until two reads agree (so a record that shifted pages is not taken for deleted)."""

        def read_once():
            yield from ()  # a generator that hands out no page: scan.until_agreed drives it
            query = dict(stream.sort_by_id, limit=self.page_size, **dict(stream.params))
            listed, pages = read_ids(stream, self.client.pages(stream, query))
            self.requests += pages
            return listed, 1 if stream.id_keyset == CURSOR else pages

        try:
            next(until_agreed(stream, read_once))
        except StopIteration as done:  # it returns the ids at once, having nothing to hand out
            return done.value

    def _probe(self, stream, delivered):
        """Ask for every delivered id with id:in, a page of ids at a time."""
        ids, gone = list(delivered.ids()), []
        for start in range(0, len(ids), self.page_size):
            batch = ids[start:start + self.page_size]
            self.requests += 1
            page = self.client.get_page(stream, {"id:in": ",".join(map(str, batch)), "limit": self.page_size})
            if page.has_more:
                raise ApiError(f"{stream.name}: the store answered an id:in probe with more than one page; stopping "
                               "rather than report a record deleted that is not.")
            found = {record.get("id") for record in page.records}
            gone.extend(rid for rid in batch if rid not in found)
        return gone
