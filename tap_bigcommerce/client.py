"""The one door to the BigCommerce API: auth headers, base URL, timeouts, retries and pacing.

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

Retries. 429, 500, 502, 503, 504, connection errors, timeouts and a 200 whose body is not JSON
are retried with exponential backoff, up to max_retries times; then the sync stops with one
sentence saying why. Nothing is skipped: a page is either read whole or the sync stops.
"""
import contextlib
import heapq
import itertools
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlencode

import orjson
import requests
from requests.adapters import HTTPAdapter
import urllib3.exceptions

from tap_bigcommerce import metrics
from tap_bigcommerce.errors import ApiError

LOGGER = logging.getLogger(__name__)
RETRY_STATUSES = {500, 502, 503, 504}
# The Pacer reckons a window turns at the latest (send time + X-Rate-Limit-Time-Reset-Ms) of the
# window's answers. The store counts a request when it arrives, a little after we send it, so the
# first request of the next window waits this much longer; a 429 doubles it.
WINDOW_MARGIN_S = 0.02
MAX_WINDOW_MARGIN_S = 1.0
# Requests sent closer together than this may reach the store in either order.
REORDER_S = 0.05
MAX_RATE_LIMITED_TRIES = 20


@dataclass
class Page:
    """One page of a list endpoint."""

    records: list
    has_more: bool
    end_cursor: Optional[str] = None
    total: Optional[int] = None


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

    def acquire(self, flow=None):
        """Wait for a request slot; returns the request's sequence number.

        A request that waits for the window to turn gives its place in `flow` back meanwhile and
        takes it again, over the Flow's limit if need be, when it goes: so when the window
        turns, every request waiting for it goes at once.
        """
        gave_back = False
        with self._cond:
            while True:
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
            while self._out >= self.limit():
                self._cond.wait()
            self._out += 1

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
    quota = _int_header(headers, "X-Rate-Limit-Requests-Quota")
    window_ms = _int_header(headers, "X-Rate-Limit-Time-Window-Ms")
    return left, quota, max(reset_ms, 0), window_ms


def _int_header(headers, name):
    try:
        return int(headers[name])
    except (KeyError, TypeError, ValueError):
        return None


class Client:
    """GET pages from one store; owns the session, the headers, retries and the Pacer."""

    def __init__(self, config, session=None, pacer=None, sleep=time.sleep):
        self.config = config
        if session is None:
            session = requests.Session()
            # One pooled connection per request in flight, so none is opened and dropped per request.
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=config.max_requests)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self.session = session
        self.session.headers.update(
            {
                "X-Auth-Token": config.access_token,
                "Accept": "application/json",
                "User-Agent": config.user_agent,
            }
        )
        self.pacer = pacer or Pacer()
        self.flow = Flow(config.max_requests)
        self._decoder = Turns()
        self._sleep = sleep
        self.store_url = f"{config.base_url}/stores/{config.store_hash}"
        self.rate_limited = 0

    def get_page(self, stream, params, handle=None, priority=0):
        """Fetch one page of `stream` with these query parameters; returns handle(page) or the page.

        Memory stays flat however many workers fetch: one page at a time is decoded, and
        `handle` runs before the next one is (it should leave nothing of the page but bytes to
        write); the Flow keeps only as many requests out as the decoder can keep up with. Of
        pages waiting to be decoded, the one with the highest `priority` goes first.
        """
        # Build the query ourselves: ":" stays raw (one report says v3 customers rejects %3A in
        # date values) and "+" in an offset travels as %2B.
        url = f"{self.store_url}/{stream.api}/{stream.path}?{urlencode(params, safe=':')}"
        limit = int(params.get("limit", 50))

        def page_of(body):
            page = _v2_page(stream, body, limit) if stream.api == "v2" else _v3_page(stream, body)
            return handle(page) if handle else page

        return self._get_json(stream, url, page_of, priority)

    def _get_json(self, stream, url, handle, priority=0):
        """GET a URL, retrying what is worth retrying; returns handle(decoded JSON, None for a 204)."""
        failures = 0
        rate_limited = 0
        while True:
            self.flow.enter()
            out = True  # until the body starts being decoded, or the request failed
            try:
                sequence = self.pacer.acquire(self.flow)
                response = None
                started = time.monotonic()
                content = b""
                try:
                    # The body is read in one call rather than requests' 10 kB chunks: a quarter
                    # of the tap's CPU went there.
                    response = self.session.get(url, timeout=self.config.request_timeout, stream=True)
                    content = response.raw.read(decode_content=True)
                except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                        urllib3.exceptions.HTTPError) as exc:
                    problem = f"the connection failed ({type(exc).__name__})"
                else:
                    problem = None
                    self.flow.took(request_s=time.monotonic() - started)
                finally:
                    if response is not None:
                        response.close()
                    self.pacer.release(sequence, response.headers if response is not None else None)
                    metrics.request_duration(stream.name, time.monotonic() - started, response)
                if problem is None and response.status_code == 200:
                    out = False
                    problem, result = self._decode(content, handle, priority)
                    if problem is None:
                        return result
            finally:
                if out:
                    self.flow.leave()

            if problem is None:
                status = response.status_code
                if status == 204:
                    return handle(None)
                if status == 429:
                    rate_limited += 1
                    self.rate_limited += 1
                    if rate_limited > MAX_RATE_LIMITED_TRIES:
                        raise ApiError(
                            f"{stream.name}: the store answered 429 Too Many Requests {rate_limited} times in a row; "
                            "another app may be using the store's whole API quota.",
                            429,
                        )
                    wait = self._rate_limit_wait(response.headers, rate_limited)
                    LOGGER.warning("%s: 429 Too Many Requests; every request waits %.1f s", stream.name, wait)
                    self.pacer.hold(wait)
                    continue
                elif status in RETRY_STATUSES:
                    problem = f"the store answered {status} {response.reason or ''}".rstrip()
                else:
                    raise _status_error(stream, response, content, self.config)

            failures += 1
            if failures > self.config.max_retries:
                raise ApiError(
                    f"{stream.name}: giving up after {failures} tries: {problem}.", getattr(response, "status_code", None)
                )
            delay = self._backoff(failures)
            LOGGER.warning("%s: %s; retry %d of %d in %.1f s", stream.name, problem, failures,
                           self.config.max_retries, delay)
            self._sleep(delay)

    def _decode(self, content, handle, priority):
        """(None, handle(body)) for a valid JSON body, else (the problem, None); one page at a time."""
        with self._decoder.turn(priority):
            self.flow.leave()
            started = time.monotonic()
            try:
                body = orjson.loads(content)
            except orjson.JSONDecodeError:
                return "the store sent a 200 whose body is not valid JSON", None
            result = handle(body)
            self.flow.took(decode_s=time.monotonic() - started)
            return None, result

    def _backoff(self, failures):
        """Exponential backoff with full jitter: up to base, 2 x base, 4 x base ... capped at a minute."""
        import backoff  # here, not at start-up: see metrics.py (singer-python has loaded it by now)

        delays = backoff.expo(factor=self.config.retry_base_delay, max_value=60)
        next(delays)  # backoff's generators start with a priming yield
        for _ in range(failures - 1):
            next(delays)
        return backoff.full_jitter(next(delays))

    def _rate_limit_wait(self, headers, attempt):
        """Seconds to wait after a 429: the window reset, else X-Retry-After, else backoff."""
        reset_ms = _int_header(headers, "X-Rate-Limit-Time-Reset-Ms")
        if reset_ms is not None:
            return reset_ms / 1000.0 + self.pacer.margin
        retry_after = _int_header(headers, "X-Retry-After")
        if retry_after is not None:
            return float(retry_after)
        # No rate-limit headers at all: the platform itself is overloaded, so back off longer.
        return min(self.config.retry_base_delay * 5 * (2 ** (attempt - 1)), 300.0)


def _v2_page(stream, body, limit):
    """v2 answers a bare array, and 204 (body None) past the end."""
    if body is None:
        return Page([], False)
    if not isinstance(body, list):
        raise ApiError(f"{stream.name}: the store answered with {type(body).__name__} where a JSON array was expected.")
    return Page(body, len(body) >= limit)


def _v3_page(stream, body):
    """v3 answers {"data": [...], "meta": {"pagination": ..., "cursor_pagination": ...}}."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ApiError(f"{stream.name}: the store's answer has no 'data' list.")
    records = body["data"]
    meta = body.get("meta") or {}
    pagination = meta.get("pagination") or {}
    cursor = meta.get("cursor_pagination") or {}
    if not records:
        return Page([], False, total=pagination.get("total"))
    if pagination:
        has_more = pagination.get("current_page", 1) < pagination.get("total_pages", 1)
    else:
        links = cursor.get("links") or {}
        has_more = bool(links.get("next")) or len(records) >= cursor.get("per_page", len(records) + 1)
    return Page(records, has_more, cursor.get("end_cursor"), pagination.get("total"))


def _status_error(stream, response, content, config):
    """Turn a status that is not worth retrying into one sentence that says what to do."""
    status = response.status_code
    if status == 401:
        return ApiError("The store rejected the access token (401 Unauthorized); check access_token in the config.", 401)
    if status == 403:
        return ApiError(
            f"{stream.name} needs the {stream.scope} read-only scope on the API account "
            f"(the store answered 403 Forbidden).",
            403,
        )
    if status == 404:
        return ApiError(
            f"The store hash {config.store_hash!r} was not found (404 from {config.base_url}); check store_hash "
            "in the config.",
            404,
        )
    detail = _error_detail(content)
    return ApiError(f"{stream.name}: the store answered {status} {response.reason or ''}{detail}.".replace("  ", " "), status)


def _error_detail(content):
    """The message inside a v2 ([{"message"}]) or v3 ({"title"}) error body, if any."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]
    if isinstance(body, dict):
        text = body.get("title") or body.get("message")
        if text:
            return f": {text}"
    return ""
