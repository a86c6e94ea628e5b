"""How the tap's worker threads share the store: one rate-limit budget, a cap on requests out,
and the order in which pages are decoded. No HTTP lives here; client.py calls in.

Rate limits. A store has one request quota per window (150 per 30 s on Standard and Plus, 450 on
Pro), shared by every app that calls it, and every response says how much is left
(X-Rate-Limit-Requests-Left) and when the window refreshes (X-Rate-Limit-Time-Reset-Ms). All the
tap's worker threads draw from one Pacer. The Pacer lets the very first request go alone, learns
the quota from its headers, then hands out the rest of the window at once and holds further
requests until the window has refreshed, so a steady sync spends the whole quota and gets no 429.
Its count follows the headers of the newest answered request, less the requests sent well after
it that are still in flight, so other apps' use of the quota is taken into account; the turn of
the window is the latest one any answer implies, plus a small margin that doubles on a 429. If a
429 comes anyway, every worker waits for X-Rate-Limit-Time-Reset-Ms (else X-Retry-After, else an
exponential backoff, longer when the 429 has no rate-limit headers: the platform is overloaded).

Flow. The Flow keeps as many requests out as keep the decoder busy (all workers over a real
link, two or three on loopback), and pages are decoded one at a time, so memory does not grow
with the number of workers or the size of the store. Requests waiting for the rate-limit window
to turn give their place in the Flow back, so that all of them go when it turns. When several
pages wait to be decoded, the one whose range has the most pages left goes first (Turns).
"""
import contextlib
import heapq
import itertools
import math
import threading
import time

from tap_bigcommerce.errors import Stopped

# The Pacer reckons a window turns at the latest (send time + X-Rate-Limit-Time-Reset-Ms) of the
# window's answers. The store counts a request when it arrives, a little after we send it, so the
# first request of the next window waits this much longer; a 429 doubles it.
WINDOW_MARGIN_S = 0.02
MAX_WINDOW_MARGIN_S = 1.0
# Requests sent closer together than this may reach the store in either order.
REORDER_S = 0.05


class Pacer:
    """One shared request budget for all worker threads, driven by the X-Rate-Limit-* headers."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._cond = threading.Condition()
        self._left = None  # unknown until the first answer
        self._quota = None
        self._window_s = None
        self._window_start = 0.0
        self._reset_at = 0.0
        self._in_flight = {}  # sequence number -> send time
        self._sequence = itertools.count(1)
        self._newest_applied = 0
        self.margin = WINDOW_MARGIN_S
        self.waited = False  # whether a request has had to wait for the window to turn
        self._stopped = False

    def acquire(self, flow=None):
        """Wait for a request slot; returns the request's sequence number.

        A request that waits for the window to turn gives its place in `flow` back meanwhile and
        takes it again, over the Flow's limit if need be, when it goes: so when the window
        turns, every request waiting for it goes at once.
        """
        gave_back = False
        with self._cond:
            while True:
                if self._stopped:
                    raise Stopped()
                now = self._clock()
                if self._left is None:
                    if not self._in_flight:
                        break
                    wait = None
                else:
                    if now >= self._reset_at:
                        # By our reckoning the window has turned: the quota is back. Answers to
                        # requests sent from now on correct the count if others use it too.
                        self._window_start = now
                        self._reset_at = now + self._window_s + self.margin
                        self._left = self._quota
                    if self._left > 0:
                        self._left -= 1
                        break
                    wait = max(self._reset_at - now, 0.001)
                    self.waited = True
                    if flow is not None and not gave_back:
                        gave_back = True
                        flow.leave()
                self._cond.wait(wait)
            sequence = next(self._sequence)
            self._in_flight[sequence] = self._clock()
        if gave_back:
            flow.resume()
        return sequence

    @property
    def quota(self):
        """Requests per window, once an answer has told it."""
        return self._quota

    @property
    def window_s(self):
        """The quota's window in seconds, once an answer has told it."""
        return self._window_s

    def release(self, sequence, headers):
        """Record the answer to request `sequence`, learning from its rate-limit headers."""
        with self._cond:
            sent_at = self._in_flight.pop(sequence, self._clock())
            limits = _rate_limit_headers(headers)
            if limits and sent_at >= self._window_start:
                left, quota, reset_ms, window_ms = limits
                self._quota = quota or self._quota or left + 1
                self._window_s = (window_ms or reset_ms or 1000) / 1000.0
                # The store started the countdown when the request arrived, after we sent it, so
                # each answer gives a time the window cannot turn before: keep the latest.
                self._reset_at = max(self._reset_at, sent_at + reset_ms / 1000.0 + self.margin)
                if sequence > self._newest_applied:
                    self._newest_applied = sequence
                    # Requests sent well after this one cannot be in its count. Those sent at
                    # about the same moment may be: assume they are, or a burst counts twice.
                    later_in_flight = sum(1 for other, at in self._in_flight.items()
                                          if other > sequence and at > sent_at + REORDER_S)
                    # Our own count is exact unless other apps share the quota, and an answer
                    # lags the requests the store counted before it: so the lower one wins.
                    estimate = max(left - later_in_flight, 0)
                    self._left = estimate if self._left is None else min(self._left, estimate)
            elif self._left is None and not limits:
                # A store that sends no rate-limit headers: nothing to pace by.
                self._quota, self._window_s = 1 << 30, 3600.0
                self._left, self._reset_at = self._quota, self._clock() + self._window_s
            self._cond.notify_all()

    def stop(self):
        """Let no request go from now on: waiting ones raise Stopped at once."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def hold(self, seconds):
        """Make every worker wait `seconds` before the next request (after a 429)."""
        with self._cond:
            self.margin = min(self.margin * 2, MAX_WINDOW_MARGIN_S)
            self._left = 0
            self._reset_at = max(self._reset_at, self._clock() + seconds)
            if self._quota is None:
                self._quota, self._window_s = 1, max(seconds, 1.0)
            self._cond.notify_all()


class Turns:
    """A lock whose waiters get it in order of priority, highest first, then in order of arrival.

    Pages are decoded one at a time. When many arrive together, a page whose range has more
    pages to come goes first, so that the range's next request is not held up behind pages
    that end their ranges: the sync ends when its longest chain of requests does.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._busy = False
        self._waiting = []  # heap of (-priority, ticket, event)
        self._tickets = itertools.count()

    @contextlib.contextmanager
    def turn(self, priority=0):
        """Hold the lock for a with-block."""
        with self._lock:
            event = None
            if self._busy:
                event = threading.Event()
                heapq.heappush(self._waiting, (-priority, next(self._tickets), event))
            self._busy = True
        if event is not None:
            event.wait()  # the holder hands the lock over by setting it
        try:
            yield
        finally:
            with self._lock:
                if self._waiting:
                    heapq.heappop(self._waiting)[2].set()
                else:
                    self._busy = False


class Flow:
    """How many requests may be out at once: enough to keep the decoder busy, and no more.

    By Little's law, a decoder that spends d seconds on a page, fed by requests that take r
    seconds, needs 1 + r/d requests out to stay busy (never fewer than two). Over a real link
    that is every worker; when the tap's own CPU is the limit it is two to four, and pages do not
    pile up in memory waiting their turn. A request counts as out from before it waits for the
    Pacer until its body starts being decoded.
    """

    def __init__(self, most):
        self._most = most
        self._out = 0
        self._cond = threading.Condition()
        self._request_s = None  # moving averages
        self._stopped = False
        self._decode_s = None

    def limit(self):
        """Requests allowed out now."""
        if self._request_s is None or self._decode_s is None:
            return min(2, self._most)
        wanted = math.ceil(1 + self._request_s / max(self._decode_s, 0.0001))
        return max(min(wanted, self._most), min(2, self._most))

    @property
    def request_s(self):
        """How long a request takes, on average (None before the first)."""
        return self._request_s

    def enter(self):
        """Wait for room to send a request."""
        with self._cond:
            while self._out >= self.limit() and not self._stopped:
                self._cond.wait()
            if self._stopped:
                raise Stopped()
            self._out += 1

    def stop(self):
        """Let no request out from now on: waiting ones raise Stopped at once."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def resume(self):
        """A request that gave its place back goes out after all, whatever the limit."""
        with self._cond:
            self._out += 1

    def leave(self):
        """A request is no longer out."""
        with self._cond:
            self._out -= 1
            self._cond.notify_all()

    def took(self, request_s=None, decode_s=None):
        """Fold one request's or one decode's duration into the averages."""
        with self._cond:
            if request_s is not None:
                self._request_s = request_s if self._request_s is None else 0.7 * self._request_s + 0.3 * request_s
            if decode_s is not None:
                self._decode_s = decode_s if self._decode_s is None else 0.7 * self._decode_s + 0.3 * decode_s
            self._cond.notify_all()


def _rate_limit_headers(headers):
    """(left, quota, reset_ms, window_ms) from a response's headers, or None if absent."""
    if headers is None:
        return None
    try:
        left = int(headers["X-Rate-Limit-Requests-Left"])
        reset_ms = int(headers["X-Rate-Limit-Time-Reset-Ms"])
    except (KeyError, TypeError, ValueError):
        return None
    quota = int_header(headers, "X-Rate-Limit-Requests-Quota")
    window_ms = int_header(headers, "X-Rate-Limit-Time-Window-Ms")
    return left, quota, max(reset_ms, 0), window_ms


def int_header(headers, name):
    try:
        return int(headers[name])
    except (KeyError, TypeError, ValueError):
        return None
