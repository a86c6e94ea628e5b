"""The one door to the BigCommerce API: auth headers, base URL, timeouts, retries and the
wording of every error.

Pacing (the shared rate-limit budget, how many requests are out, the order pages are decoded
in) lives in pacing.py; this module asks it before each request and tells it every answer.

Retries. 429, 500, 502, 503, 504, connection errors, timeouts and a 200 whose body is not JSON
are retried with exponential backoff, up to max_retries times; then the sync stops with one
sentence saying why. Nothing is skipped: a page is either read whole or the sync stops.

Redirects are never followed: the API does not redirect, and following one would send the
access token to whatever host it names.
"""
import http.client
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlencode, urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
import urllib3.exceptions

from tap_bigcommerce import metrics
from tap_bigcommerce.errors import ApiError, Stopped
from tap_bigcommerce.pacing import Flow, Pacer, Turns, int_header
from tap_bigcommerce.streams import CURSOR, SINGLE

LOGGER = logging.getLogger(__name__)
RETRY_STATUSES = {500, 502, 503, 504}
MAX_RATE_LIMITED_TRIES = 20


@dataclass
class Page:
    """One page of a list endpoint."""

    records: list
    has_more: bool
    end_cursor: Optional[str] = None
    total: Optional[int] = None


class Client:
    """GET pages from one store; owns the session, the headers, retries and the Pacer."""

    def __init__(self, config, session=None, pacer=None, sleep=None):
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
        self.stopping = threading.Event()
        self._sleep = sleep or self.stopping.wait  # a retry's wait ends at once when the sync stops
        self.store_url = f"{config.base_url}/stores/{config.store_hash}"
        self.rate_limited = 0
        self._gates = {}  # stream name -> semaphore, for endpoints with a concurrency limit
        self._gates_lock = threading.Lock()

    def stop(self):
        """Send no request from now on: requests waiting for their turn or a retry raise Stopped."""
        self.stopping.set()
        self.pacer.stop()
        self.flow.stop()

    def get_page(self, stream, params, handle=None, priority=0, path=None):
        """Fetch one page of `stream` with these query parameters; returns handle(page) or the page.

        Memory stays flat however many workers fetch: one page at a time is decoded, and
        `handle` runs before the next one is (it should leave nothing of the page but bytes to
        write); the Flow keeps only as many requests out as the decoder can keep up with. Of
        pages waiting to be decoded, the one with the highest `priority` goes first. `path` reads
        a list other than the stream's own (a sub-resource of one of its records).
        """
        # Build the query ourselves: ":" stays raw (one report says v3 customers rejects %3A in
        # date values) and "+" in an offset travels as %2B.
        url = f"{self.store_url}/{stream.api}/{path or stream.path}?{urlencode(params, safe=':')}"
        limit = int(params.get("limit", 50))

        def page_of(body):
            page = _v2_page(stream, body, limit) if stream.api == "v2" else _v3_page(stream, body, limit)
            return handle(page) if handle else page

        gate = self._gate(stream)
        self._enter_gate(gate)
        try:
            return self._get_json(stream, url, page_of, priority)
        finally:
            if gate is not None:
                gate.release()

    def pages(self, stream, params, path=None):
        """Every page of a list from `params` on, one request at a time: by its cursor where the
        stream pages by one (a keyset), else by page number."""
        query = dict(params)
        if stream.id_keyset != CURSOR:
            query.setdefault("page", 1)
        while True:
            page = self.get_page(stream, query, path=path)
            yield page
            if not page.has_more:
                return
            if stream.id_keyset != CURSOR:
                query["page"] += 1
            elif page.end_cursor:
                query["after"] = page.end_cursor
            else:
                raise ApiError(f"{stream.name}: the store gave no cursor to continue from; "
                               "stopping rather than risk a gap.")

    def count(self, stream, params):
        """How many of the stream's records match the filters: v2 answers its /count path, v3 the
        pagination total of a one-record page."""
        if stream.api == "v3":
            page = self.get_page(stream, dict(params, limit=1))
            if not isinstance(page.total, int):
                raise ApiError(f"{stream.name}: the store's answer has no pagination total to count records by.")
            return page.total
        url = f"{self.store_url}/v2/{stream.path}/count?{urlencode(params, safe=':')}"
        body = self._get_json(stream, url, lambda body: body)
        if not isinstance(body, dict) or not isinstance(body.get("count"), int):
            raise ApiError(f"{stream.name}: the store's /count answer has no whole-number count.")
        return body["count"]

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
                    if self.stopping.is_set():
                        raise Stopped()
                    # The body is read in one call rather than requests' 10 kB chunks: a quarter
                    # of the tap's CPU went there.
                    response = self.session.get(url, timeout=self.config.request_timeout, stream=True,
                                                allow_redirects=False)
                    content = response.raw.read(decode_content=True)
                except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                        urllib3.exceptions.HTTPError) as exc:
                    problem = _connection_problem(exc, self.config)
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
                    problem, result = self._decode(response, content, handle, priority)
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

    def _gate(self, stream):
        """The semaphore that keeps a stream's requests under its endpoint's own concurrency
        limit (BigCommerce answers 429 past it), or None where the store's quota is the only one."""
        if stream.concurrency is None:
            return None
        with self._gates_lock:
            return self._gates.setdefault(stream.name, threading.BoundedSemaphore(stream.concurrency))

    def _enter_gate(self, gate):
        """Wait for room under an endpoint's concurrency limit (raises Stopped if the sync stops).
        A request keeps its place through its retries."""
        while gate is not None and not gate.acquire(timeout=0.2):
            if self.stopping.is_set():
                raise Stopped()

    def _decode(self, response, content, handle, priority):
        """(None, handle(body)) for a valid JSON body, else (the problem, None); one page at a time."""
        with self._decoder.turn(priority):
            self.flow.leave()
            started = time.monotonic()
            try:
                body = orjson.loads(content)
            except orjson.JSONDecodeError:
                if _is_html(response, content):
                    return ("the store sent a 200 with an HTML page instead of JSON (a proxy, firewall or "
                            "login page answered, not the API)"), None
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
        reset_ms = int_header(headers, "X-Rate-Limit-Time-Reset-Ms")
        if reset_ms is not None:
            return reset_ms / 1000.0 + self.pacer.margin
        retry_after = int_header(headers, "X-Retry-After")
        if retry_after is not None:
            return float(retry_after)
        # No rate-limit headers at all: the platform itself is overloaded, so back off longer.
        return min(self.config.retry_base_delay * 5 * (2 ** (attempt - 1)), 300.0)


def _v2_page(stream, body, limit):
    """v2 answers a bare array, and 204 (body None) past the end; a SINGLE stream may answer one object."""
    if body is None:
        return Page([], False)
    if stream.kind == SINGLE and isinstance(body, dict):
        return Page([body], False)
    if not isinstance(body, list):
        raise ApiError(f"{stream.name}: the store answered with {type(body).__name__} where a JSON array was expected.")
    return Page(body, stream.kind != SINGLE and len(body) >= limit)  # a SINGLE list comes whole


def _v3_page(stream, body, limit):
    """v3 answers {"data": [...], "meta": {"pagination": ..., "cursor_pagination": ...}}.

    Without pagination data a full page is never taken as the last: the next read decides.
    """
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
    elif cursor:
        links = cursor.get("links") or {}
        has_more = bool(links.get("next")) or len(records) >= cursor.get("per_page", len(records) + 1)
    else:
        has_more = len(records) >= limit
    return Page(records, has_more, cursor.get("end_cursor"), pagination.get("total"))


def _status_error(stream, response, content, config):
    """Turn a status that is not worth retrying into one sentence that says what to do."""
    status = response.status_code
    if 300 <= status < 400:
        return _redirect_error(stream, response, config)
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
    return ApiError(f"{stream.name}: the store answered {status_line(response)}{detail}.", status)


def _redirect_error(stream, response, config):
    """A redirect names the status and where it pointed (scheme and host only: never a query)."""
    location = response.headers.get("Location") or ""
    parts = urlsplit(location)
    where = f"{parts.scheme}://{parts.netloc}" if parts.netloc else "a path on the same host"
    if "@" in where:
        where = f"{parts.scheme}://{parts.hostname}"
    return ApiError(
        f"{stream.name}: the store answered {status_line(response)} pointing to {where}; the API never redirects, "
        f"so the tap stopped rather than send the access token there (check base_url: {config.base_url}).",
        response.status_code,
    )


def status_line(response):
    """"302 Found", or just the code when the reason is missing."""
    return f"{response.status_code} {response.reason or ''}".rstrip()


def _is_html(response, content):
    """Whether a body is an HTML page (a proxy's, a captive portal's or a login page)."""
    kind = (response.headers.get("Content-Type") or "").lower()
    return "html" in kind or content.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html"))


# What a failed connection comes down to, checked from the most specific cause (urllib3 files
# a refused connection under its timeout errors, so timeouts come last).
_CAUSES = (
    ((ConnectionRefusedError,), "connection refused"),
    ((ConnectionResetError,), "connection reset"),
    ((socket.gaierror, getattr(urllib3.exceptions, "NameResolutionError", socket.gaierror)), "name not resolved"),
    ((ssl.SSLError, requests.exceptions.SSLError, urllib3.exceptions.SSLError), "TLS handshake failed"),
    ((http.client.IncompleteRead, requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError),
     "the connection closed before the whole answer came"),
    ((requests.Timeout, socket.timeout, urllib3.exceptions.TimeoutError), "timed out"),
)


def _connection_problem(exc, config):
    """'the connection to HOST failed: CAUSE', with the cause in plain words."""
    chain = list(_exception_chain(exc))
    cause = next((words for kinds, words in _CAUSES if any(isinstance(e, kinds) for e in chain)),
                 type(exc).__name__)
    host = urlsplit(config.base_url).netloc
    if cause == "timed out":
        return f"the connection to {host} timed out (no answer within {config.request_timeout:g} s)"
    return f"the connection to {host} failed: {cause}"


def _exception_chain(exc):
    """The exception, what caused it, and what those wrap (urllib3 keeps the cause in .reason)."""
    stack, seen = [exc], set()
    while stack:
        current = stack.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend([current.__cause__, current.__context__, getattr(current, "reason", None)])
        stack.extend(getattr(current, "args", ()))


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
        if isinstance(text, str) and text.strip():
            return f": {text.strip().rstrip('.')}"
    return ""
