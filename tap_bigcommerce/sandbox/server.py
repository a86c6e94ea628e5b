"""The sandbox HTTP server: answers like a BigCommerce store for coupons, orders, customers and products.

It follows `shared/bigcommerce-api.md`. Where the facts sheet is silent, these are the choices made:

- Order of checks: the rate limit first (every request that arrives counts, errors included, except
  429s), then the store hash (404), the token (401), the path (404; a v3 path with a trailing slash
  gets 403 "Authentication Required", as once reported), the scope (403), then the parameters.
- A "data request" is a GET to a list endpoint or an order sub-resource that passed the quota, the
  token and the scope. Data requests are numbered from 1 across the server; faults are drawn for
  each one in that order, and a `Change(after_request=N)` is applied once request N has been answered
  (and, to be safe against a fast client, before request N+1 is served).
- v3 `limit` above 250 gets 413 like v2 (the docs say 413 for a too-large limit and say no more);
  `limit` or `page` below 1 or not a number gets 400 on v2 and 422 on v3.
- Customers: `sort` together with `after`/`before` gets 422, because the cursor is keyset on id and
  silently dropping the sort would hide a tap bug. `after` and `before` together get 422 too.
  Cursor pages are in id order. Page 1 without a cursor carries both `pagination` and
  `cursor_pagination`; a cursor request carries only `cursor_pagination`.
- v3 `total_pages` is 0 when nothing matches; past the end v3 answers 200 with `data: []`.
- Unknown parameter names get 400 (v2) or 422 (v3) in strict mode; without strict they are ignored.
- Order sub-resources of an order that does not exist get 404; an empty list gets 204.
- A dropped request is logged with status None.
- Deletes happen before edits in one Change, so one Change never edits a record it deletes.
- Date bounds are inclusive (`>=`, `<=`), as the general filtering guide says. For the streams in
  `exclusive_bounds` (or "all") every date bound is strict (`>`, `<`), as the customers reference
  ("modified after", "before") may be read: the tap must lose nothing either way.
- Orders: `include=` takes consignments, consignments.line_items and fees. With
  consignment_structure=object, consignments is {pickups, shipping, downloads, email:
  {gift_certificates}}, each consignment with its line items (full records, or links with
  include=consignments alone); shipping consignments carry money as JSON numbers, as the
  reference's example does. Without consignment_structure=object the legacy shape (undocumented
  today) is a list of one-key objects, one per kind. Without include, consignments and fees are
  links like products. `embedded_line_cap` cuts each consignment's embedded lines (the reference
  documents no cap; the tap must not trust there is none); /orders/{id}/products keeps them all.
- Refunds (GET /v3/orders/payment_actions/refunds): id order, which is creation order; page
  numbers; `meta` is an empty object, as the reference documents. Adding a refund (a Change on
  "refunds") moves its order's date_modified to now and adds to its refunded_amount.
- Faults beyond status codes and broken connections: "html" answers 200 with an HTML login page
  (a proxy or captive portal); "no-meta" answers a v3 list without its `meta`; "null-date" sets
  the first record's date_modified to null; "stall" holds the request unanswered (up to a minute,
  or until the sandbox stops) and then drops it; "redirect" answers 302 to `redirect_to` plus the
  same path and query (the API itself never redirects).
"""
from __future__ import annotations

import base64
import binascii
import bisect
import datetime as dt
import email.utils
import itertools
import json
import math
import random
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable, Optional, Sequence
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import orjson

from tap_bigcommerce.sandbox.data import STREAMS, Record, StoreData, StoreSpec, StreamData, now_utc

ALL_SCOPES = ("store_v2_marketing_read_only", "store_v2_orders_read_only",
              "store_v2_customers_read_only", "store_v2_products_read_only", "store_channel_settings_read_only",
              "store_v2_information_read_only")
SCOPE_OF = {"coupons": "store_v2_marketing_read_only", "orders": "store_v2_orders_read_only",
            "customers": "store_v2_customers_read_only", "products": "store_v2_products_read_only",
            "refunds": "store_v2_orders_read_only", "brands": "store_v2_products_read_only",
            "customer_groups": "store_v2_customers_read_only", "channels": "store_channel_settings_read_only",
            "gift_certificates": "store_v2_marketing_read_only", "currencies": "store_v2_information_read_only",
            "order_statuses": "store_v2_orders_read_only", "promotions": "store_v2_marketing_read_only",
            "category_trees": "store_v2_products_read_only", "customer_addresses": "store_v2_customers_read_only",
            "subscribers": "store_v2_customers_read_only", "customer_attributes": "store_v2_customers_read_only",
            "customer_attribute_values": "store_v2_customers_read_only", "price_lists": "store_v2_products_read_only",
            "product_metafields": "store_v2_products_read_only", "product_variants": "store_v2_products_read_only",
            "categories": "store_v2_products_read_only", "order_metafields": "store_v2_orders_read_only",
            "customer_metafields": "store_v2_customers_read_only",
            "store": "store_v2_information_read_only", "promotion_codes": "store_v2_marketing_read_only",
            "price_list_records": "store_v2_products_read_only"}
# Endpoints with their own limit on requests at once, on top of the store's quota (429 past it):
# (path pattern, name, documented limit).
ENDPOINT_LIMITS = ((re.compile(r"/v2/customer_groups$"), "customer_groups", 40),
                   (re.compile(r"/v3/catalog/trees/categories$"), "categories", 40),
                   (re.compile(r"/v3/promotions$"), "promotions", 40),
                   (re.compile(r"/v3/promotions/\d+/codes$"), "promotion_codes", 10),
                   (re.compile(r"/v3/pricelists/\d+/records$"), "price_list_records", 10))
CHANNEL_FILTER_STATUSES = {"prelaunch", "active", "inactive", "connected", "disconnected", "archived", "deleted",
                           "terminated"}
ERROR_TYPE = "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes"
FAULTS = ("500", "502", "503", "504", "drop", "truncate", "429", "429-bare",
          "html", "no-meta", "null-date", "stall", "redirect")
STALL_S = 60.0
LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><form>Sign in</form></body></html>"
MAX_LIMIT = 250
CUSTOMER_INCLUDES = {"addresses", "storecredit", "attributes", "formfields", "shopper_profile_id", "segment_ids"}
ORDER_INCLUDES = {"consignments", "consignments.line_items", "fees"}
PRODUCT_INCLUDES = {"bulk_pricing_rules", "channels", "custom_fields", "images", "modifiers", "options",
                    "parent_relations", "primary_image", "reviews", "variants", "videos"}
V2_DATE_FILTERS = ("min_date_modified", "max_date_modified", "min_date_created", "max_date_created")
V3_CUSTOMER_DATES = ("date_modified:min", "date_modified:max", "date_created:min", "date_created:max")


@dataclass
class Change:
    """A change to apply once, right after the `after_request`-th data request has been answered."""

    after_request: int
    stream: str
    edit: int = 0
    create: int = 0
    delete: int = 0
    edit_ids: Optional[Sequence[int]] = None
    delete_ids: Optional[Sequence[int]] = None


@dataclass
class SandboxOptions:
    """Everything that shapes a sandbox store: data, limits, faults, changes, tokens and where to listen."""

    seed: int = 1
    coupons: int = 40
    customers: int = 150
    orders: int = 400
    products: int = 120
    brands: int = 40
    customer_groups: int = 3
    channels: int = 4
    gift_certificates: int = 30
    currencies: int = 3
    promotions: int = 25
    category_trees: int = 2
    categories: int = 40
    subscribers: int = 60
    customer_attributes: int = 5
    customer_attribute_values: int = 80
    price_lists: int = 4
    product_metafields: int = 40
    order_metafields: int = 40
    customer_metafields: int = 40
    promotion_codes: int = 60
    price_list_records: int = 120
    concurrency: dict = field(default_factory=dict)  # endpoint name -> its limit, overriding ENDPOINT_LIMITS
    quota: int = 150
    window_ms: int = 30000
    latency_ms: float = 0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    truncate_rate: float = 0.0
    fault_seed: int = 0
    faults_at: dict = field(default_factory=dict)
    same_second: dict = field(default_factory=dict)
    changes: list = field(default_factory=list)
    tokens: dict = field(default_factory=dict)
    store_hash: str = "sandbox"
    token: str = "sandbox-token"
    strict: bool = True
    host: str = "127.0.0.1"
    port: int = 0
    log_path: Optional[str] = None
    data_end: Optional[dt.datetime] = None
    exclusive_bounds: object = ()  # stream names whose date bounds are strict, or "all"
    redirect_to: str = "http://127.0.0.1:9"  # where the "redirect" fault points
    refunds: Optional[int] = None  # refunds on random orders; None: one per ten orders
    embedded_line_cap: Optional[int] = None  # cut each consignment's embedded line items to this many
    embedded_line_warning: bool = False  # and say so in a __warning__ key


def _plus(value: Optional[int], step: int) -> Optional[int]:
    """value + step, or None."""
    return None if value is None else value + step


def _page_meta(total: int, count: int, page: int, limit: int) -> dict:
    """meta.pagination of one page of a page-number v3 listing."""
    total_pages = math.ceil(total / limit)
    links = {"current": f"?page={page}&limit={limit}"}
    if page > 1:
        links["previous"] = f"?page={page - 1}&limit={limit}"
    if page < total_pages:
        links["next"] = f"?page={page + 1}&limit={limit}"
    return {"pagination": {"total": total, "count": count, "per_page": limit, "current_page": page,
                           "total_pages": total_pages, "links": links}}


class ApiError(Exception):
    """An error answer: its status and message, rendered in the v2 or v3 body shape."""

    def __init__(self, status: int, message: str, errors: Optional[dict] = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or {}


def error_body(version: str, status: int, message: str, errors: Optional[dict] = None) -> bytes:
    """Render an error body: a list of {status, message} on v2, {status, title, type, errors} on v3."""
    if version == "v2":
        return orjson.dumps([{"status": status, "message": message}])
    return orjson.dumps({"status": status, "title": message, "type": ERROR_TYPE, "errors": errors or {}})


class RateLimiter:
    """A fixed-window quota: a window opens at the first request after the last one ended."""

    def __init__(self, quota: int, window_ms: int):
        self.quota = quota
        self.window = window_ms / 1000.0
        self.started: Optional[float] = None
        self.used = 0
        self.lock = threading.Lock()

    def take(self) -> tuple[bool, dict]:
        """Count one arriving request; return whether it is allowed and the headers for its answer."""
        now = time.monotonic()
        with self.lock:
            if self.started is None or now >= self.started + self.window:
                self.started, self.used = now, 0
            reset_ms = max(0, math.ceil((self.started + self.window - now) * 1000))
            allowed = self.used < self.quota
            if allowed:
                self.used += 1
            headers = {"X-Rate-Limit-Requests-Left": str(self.quota - self.used),
                       "X-Rate-Limit-Requests-Quota": str(self.quota),
                       "X-Rate-Limit-Time-Reset-Ms": str(reset_ms),
                       "X-Rate-Limit-Time-Window-Ms": str(int(self.window * 1000))}
            if not allowed:
                headers["X-Retry-After"] = str(max(1, math.ceil(reset_ms / 1000)))
            return allowed, headers

    def refund(self, headers: dict) -> dict:
        """Give back the request just counted (an injected 429 costs nothing) and fix its headers."""
        with self.lock:
            self.used = max(0, self.used - 1)
        fixed = dict(headers)
        fixed["X-Rate-Limit-Requests-Left"] = str(int(headers["X-Rate-Limit-Requests-Left"]) + 1)
        fixed["X-Retry-After"] = str(max(1, math.ceil(int(headers["X-Rate-Limit-Time-Reset-Ms"]) / 1000)))
        return fixed


@dataclass
class Reply:
    """What to send back for one request."""

    status: int
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    fault: Optional[str] = None
    data_number: int = 0


# ----- query parsing -----

def parse_date(value: str, date_only: str = "midnight", allow_epoch: bool = False) -> dt.datetime:
    """Parse a filter date: ISO 8601 (naive = UTC), RFC 2822, or a unix timestamp when allowed.

    `date_only` says what a bare date means: "midnight" (UTC) or "now" (the current time of day,
    as v3 products do).
    """
    text = value.strip()
    if allow_epoch and re.fullmatch(r"\d{1,12}", text):
        return dt.datetime.fromtimestamp(int(text), dt.timezone.utc)
    parsed = None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        day = dt.date.fromisoformat(text)
        if date_only == "now":
            now = dt.datetime.now(dt.timezone.utc)
            return dt.datetime.combine(day, now.time().replace(microsecond=0), dt.timezone.utc)
        return dt.datetime.combine(day, dt.time(), dt.timezone.utc)
    if re.match(r"\d{4}-\d{2}-\d{2}T", text):
        parsed = dt.datetime.fromisoformat(text)
    elif re.match(r"[A-Za-z]{3}, ", text):
        parsed = email.utils.parsedate_to_datetime(text)
    if parsed is None:
        raise ValueError(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


class Query:
    """The decoded query of one request, checked against the names an endpoint accepts."""

    def __init__(self, pairs: list, version: str, allowed: Iterable[str], strict: bool):
        self.version = version
        self.values = {}
        for key, value in pairs:
            if key not in allowed:
                if strict:
                    raise ApiError(self.bad, f"The query parameter '{key}' is not supported by this endpoint.",
                                   {key: "unsupported parameter"})
                continue
            self.values[key] = value

    @property
    def bad(self) -> int:
        """The status for a bad value: 400 on v2, 422 on v3."""
        return 400 if self.version == "v2" else 422

    def get(self, key: str) -> Optional[str]:
        """The raw value of a parameter, or None."""
        return self.values.get(key)

    def integer(self, key: str, default: Optional[int] = None, minimum: Optional[int] = None) -> Optional[int]:
        """An integer parameter; a non-number or one below `minimum` is a bad value."""
        raw = self.values.get(key)
        if raw is None:
            return default
        try:
            number = int(raw)
        except ValueError:
            raise ApiError(self.bad, f"The parameter '{key}' must be an integer.", {key: raw}) from None
        if minimum is not None and number < minimum:
            raise ApiError(self.bad, f"The parameter '{key}' must be at least {minimum}.", {key: raw})
        return number

    def page_limit(self) -> tuple[int, int]:
        """`page` (default 1) and `limit` (default 50, 413 above 250)."""
        page = self.integer("page", 1, 1)
        limit = self.integer("limit", 50, 1)
        if limit > MAX_LIMIT:
            raise ApiError(413, f"The limit parameter was above the maximum allowed ({MAX_LIMIT}).")
        return page, limit

    def date(self, key: str, **kwargs) -> Optional[dt.datetime]:
        """A date filter; an unparsable value is a bad value."""
        raw = self.values.get(key)
        if raw is None:
            return None
        try:
            return parse_date(raw, **kwargs)
        except (ValueError, TypeError, IndexError):
            raise ApiError(self.bad, f"The parameter '{key}' is not a valid date: {raw!r}.", {key: raw}) from None

    def id_list(self, key: str) -> Optional[set]:
        """A comma-separated list of ids (`id:in`)."""
        raw = self.values.get(key)
        if raw is None:
            return None
        try:
            return {int(part) for part in raw.split(",") if part.strip()}
        except ValueError:
            raise ApiError(self.bad, f"The parameter '{key}' must be a list of integers.", {key: raw}) from None

    def include(self, allowed: set) -> list:
        """The `include=` names, each checked against what the endpoint offers."""
        raw = self.values.get("include") or ""
        names = [part.strip() for part in raw.split(",") if part.strip()]
        for name in names:
            if name not in allowed:
                raise ApiError(self.bad, f"The include value '{name}' is not valid.", {"include": name})
        return names


# ----- selection -----

@dataclass
class Filter:
    """Inclusive bounds and sets that a record must satisfy."""

    id_min: Optional[int] = None
    id_max: Optional[int] = None
    id_in: Optional[set] = None
    mod_min: Optional[dt.datetime] = None
    mod_max: Optional[dt.datetime] = None
    created_min: Optional[dt.datetime] = None
    created_max: Optional[dt.datetime] = None
    extra: Optional[Callable[[Record], bool]] = None

    def __call__(self, rec: Record) -> bool:
        """Whether the record matches every bound."""
        return ((self.id_min is None or rec.id >= self.id_min)
                and (self.id_max is None or rec.id <= self.id_max)
                and (self.id_in is None or rec.id in self.id_in)
                and (self.mod_min is None or rec.modified >= self.mod_min)
                and (self.mod_max is None or rec.modified <= self.mod_max)
                and (self.created_min is None or rec.created >= self.created_min)
                and (self.created_max is None or rec.created <= self.created_max)
                and (self.extra is None or self.extra(rec)))


def select(data: StreamData, flt: Filter, sort: str = "id", descending: bool = False,
           key: Optional[Callable[[Record], object]] = None) -> Iterable[Record]:
    """Matching records in sort order (ties by id ascending), lazily where an index allows it."""
    by_id = data.by_id
    if sort == "id":
        ids = data.ids_between(flt.id_min, flt.id_max)
        order = reversed(ids) if descending else ids
    elif sort == "date_modified":
        order = data.ids_by_modified(flt.mod_min, flt.mod_max, descending)
    else:
        recs = [rec for rec in map(by_id.__getitem__, data.ids_between(flt.id_min, flt.id_max)) if flt(rec)]
        if descending:
            recs.sort(key=lambda r: (key(r), -r.id), reverse=True)
        else:
            recs.sort(key=lambda r: (key(r), r.id))
        return recs
    return (rec for rec in map(by_id.__getitem__, order) if flt(rec))


def _spoil(body: bytes, fault: str) -> bytes:
    """A list answer without its v3 meta ("no-meta"), or with its first date_modified null ("null-date")."""
    parsed = orjson.loads(body)
    records = parsed.get("data") if isinstance(parsed, dict) else parsed
    if fault == "no-meta" and isinstance(parsed, dict):
        parsed.pop("meta", None)
    if fault == "null-date" and records:
        records[0]["date_modified"] = None
    return orjson.dumps(parsed)


def page_of(records: Iterable[Record], page: int, limit: int) -> list:
    """The records on one page of a page-number listing."""
    start = (page - 1) * limit
    return list(itertools.islice(records, start, start + limit))


def encode_cursor(rid: int) -> str:
    """A customers cursor: base64 of `{"id": N}`, as BigCommerce's look."""
    return base64.b64encode(orjson.dumps({"id": rid})).decode()


def decode_cursor(value: str) -> int:
    """The id inside a customers cursor (padding optional)."""
    raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    rid = orjson.loads(raw)["id"]
    if not isinstance(rid, int):
        raise ValueError(value)
    return rid


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its sandbox and its open connections."""

    daemon_threads = True
    allow_reuse_address = True
    # socketserver listens with a backlog of 5: a burst of new connections (a client opening its
    # pool as a rate-limit window turns) overflowed it, and the kernel dropped the extra
    # connection attempts, which clients retry only a second later. An API front end does not.
    request_queue_size = 128

    def __init__(self, address, handler, sandbox: "Sandbox"):
        self.sandbox = sandbox
        self.connections: set = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def handle_error(self, request, client_address):
        """A client that went away (a killed tap) is not an error worth a traceback; others are."""
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Hands every request to the sandbox; HTTP/1.1 keep-alive with exact Content-Length."""

    protocol_version = "HTTP/1.1"
    server_version = "BigCommerceSandbox/1.0"
    # Headers and body go out in separate writes; without this, Nagle plus delayed ACKs add ~40 ms.
    disable_nagle_algorithm = True

    def setup(self):
        """Remember the connection so that stop() can close it."""
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self):
        """Forget the connection."""
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def do_GET(self):
        """Serve a GET."""
        self.server.sandbox.handle(self)

    def _read_only(self):
        """The API accounts a tap uses are read-only: any other method is refused."""
        self.server.sandbox.handle(self, method_allowed=False)

    do_POST = do_PUT = do_PATCH = do_DELETE = _read_only

    def log_message(self, format, *args):
        """Silence the default stderr log: the sandbox keeps its own request log."""


class Sandbox:
    """A local BigCommerce-like store on 127.0.0.1; use as a context manager or start()/stop()."""

    def __init__(self, options: Optional[SandboxOptions] = None):
        self.options = options or SandboxOptions()
        opts = self.options
        for number, fault in opts.faults_at.items():
            if fault not in FAULTS:
                raise ValueError(f"faults_at[{number}]: unknown fault {fault!r}; choose from {FAULTS}")
        for stream in opts.same_second:
            if stream not in STREAMS:
                raise ValueError(f"same_second: unknown stream {stream!r}")
        unknown = set() if opts.exclusive_bounds == "all" else set(opts.exclusive_bounds) - set(STREAMS) - {"refunds"}
        if unknown:
            raise ValueError(f"exclusive_bounds: unknown streams {sorted(unknown)}")
        self.store = StoreData(StoreSpec(
            seed=opts.seed,
            counts={"coupons": opts.coupons, "customers": opts.customers, "orders": opts.orders,
                    "products": opts.products, "brands": opts.brands, "customer_groups": opts.customer_groups,
                    "channels": opts.channels, "gift_certificates": opts.gift_certificates,
                    "currencies": opts.currencies, "promotions": opts.promotions,
                    "category_trees": opts.category_trees, "categories": opts.categories, "subscribers": opts.subscribers,
                    "customer_attributes": opts.customer_attributes,
                    "customer_attribute_values": opts.customer_attribute_values, "price_lists": opts.price_lists,
                    "product_metafields": opts.product_metafields, "order_metafields": opts.order_metafields,
                    "customer_metafields": opts.customer_metafields, "promotion_codes": opts.promotion_codes,
                    "price_list_records": opts.price_list_records,
                    "refunds": opts.orders // 10 if opts.refunds is None else opts.refunds},
            same_second=opts.same_second, data_end=opts.data_end))
        self.tokens = {opts.token: set(ALL_SCOPES)}
        self.tokens.update({token: set(scopes) for token, scopes in opts.tokens.items()})
        self.rate = RateLimiter(opts.quota, opts.window_ms)
        self._encoded_cache: dict = {}
        self.lock = threading.RLock()
        self.requests: list = []
        self.data_requests = 0
        self.in_flight: dict = {}  # endpoint name -> requests being answered (endpoints with a limit)
        self.peak_in_flight: dict = {}  # the most seen at once
        self.over_limit = 0  # requests answered 429 for an endpoint's own limit
        self._pending: list = []
        for change in opts.changes:
            self.schedule(change)
        self._fault_rng = random.Random(opts.fault_seed)
        self._log_lock = threading.Lock()
        self._log_file = None
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()  # ends stalled requests
        self.base_url = ""

    # ----- lifecycle -----

    def start(self) -> "Sandbox":
        """Start listening (on a free port unless options.port says otherwise) in a background thread."""
        if self._server is not None:
            return self
        if self.options.log_path:
            self._log_file = open(self.options.log_path, "a", encoding="utf-8")
        self._server = _Server((self.options.host, self.options.port), _Handler, self)
        host, port = self._server.server_address[:2]
        self.base_url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="bigcommerce-sandbox",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and close every open connection."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        with self._server.connections_lock:
            for conn in list(self._server.connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = None
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> "Sandbox":
        """Start on entry."""
        return self.start()

    def __exit__(self, *exc) -> None:
        """Stop on exit."""
        self.stop()

    # ----- public helpers -----

    def config(self, start_date: str = "2020-01-01T00:00:00Z", **overrides) -> dict:
        """A tap config pointing at this sandbox; base_url stands in for https://api.bigcommerce.com."""
        cfg = {"client_id": "sandbox-client", "access_token": self.options.token,
               "store_hash": self.options.store_hash, "start_date": start_date, "base_url": self.base_url}
        cfg.update(overrides)
        return cfg

    def records(self, stream: str, include: Sequence[str] = ()) -> list:
        """The stream's current records as the API serializes them (with these include= extras;
        for orders, order_tokens() says what shapes them), in id order; promotion codes with
        their promotion_id."""
        if stream == "store":
            return [self.store_info()]
        if stream == "order_statuses":
            return self.store.order_statuses()
        if stream in self.store.DERIVED:
            with self.lock:
                parents = self.store.streams[self.store.DERIVED[stream][0]]
                return self.store.derived(stream, (parents.by_id[rid] for rid in parents.ids))
        with self.lock:
            data = self.store.streams[stream]
            owners = self.store.owner_of(stream)
            alive = self.store.streams[owners].by_id if owners else None
            rows = [(data.by_id[rid], self._serialize(stream, data.by_id[rid], include)) for rid in data.ids
                    if alive is None or data.by_id[rid].attrs[0] in alive]
        # A code's promotion is in the path it is listed under, not in the code: added here.
        return [dict(row, promotion_id=rec.attrs[0]) if stream == "promotion_codes" else row for rec, row in rows]

    def prewarm_for_tap(self) -> None:
        """prewarm() with what tap-bigcommerce asks each list for (its stream rows say it)."""
        from tap_bigcommerce.streams import STREAMS as TAP_STREAMS

        includes = {}
        for row in TAP_STREAMS:
            if row.name in self.store.streams:
                asked = row.include.split(",") if row.include else []
                structure = dict(row.params).get("consignment_structure")
                includes[row.name] = self.order_tokens(asked, structure) if row.name == "orders" else asked
        self.prewarm(includes)

    def prewarm(self, includes: dict) -> None:
        """Encode every record now, with the given include= list per stream, so that a benchmark's
        first sync does not pay for building the store's answers."""
        with self.lock:
            for stream, include in includes.items():
                data = self.store.streams[stream]
                for rid in data.ids:
                    self._encoded(stream, data.by_id[rid], include)

    def edit(self, stream: str, ids: Optional[Sequence[int]] = None, count: Optional[int] = None) -> list:
        """Set date_modified to now on the given ids, or on the `count` oldest by (date_modified, id)."""
        with self.lock:
            data = self.store.streams[stream]
            chosen = list(ids) if ids is not None else data.oldest(count or 0)
            when = now_utc()
            for rid in chosen:
                data.touch(rid, when)
            return chosen

    def create(self, stream: str, count: int) -> list:
        """Add `count` new records created and modified now; return their ids."""
        with self.lock:
            return self.store.create(stream, count, now_utc())

    def delete(self, stream: str, ids: Optional[Sequence[int]] = None, count: Optional[int] = None) -> list:
        """Remove the given ids, or the `count` oldest by (date_modified, id); they simply vanish."""
        with self.lock:
            data = self.store.streams[stream]
            chosen = list(ids) if ids is not None else data.oldest(count or 0)
            for rid in chosen:
                data.remove(rid)
            return chosen

    def archive(self, order_ids: Sequence[int]) -> None:
        """Archive orders, as DELETE /v2/orders/{id} does: they stay in the list with is_deleted true
        (what BigCommerce's list does with them is not documented; the sandbox keeps them) and
        their date_modified moves to now."""
        with self.lock:
            self.store.archived.update(order_ids)
            self.edit("orders", ids=order_ids)

    def add_refunds(self, count: int) -> list:
        """Refund `count` random orders now; each refunded order's date_modified moves to now too."""
        with self.lock:
            orders = self.store.streams["orders"]
            when = now_utc()
            made = []
            for _ in range(count):
                rec = orders.by_id[self.store._refund_rng.choice(orders.ids)]
                made.append(self.store.add_refund(rec, when))
                orders.touch(rec.id, when)
            return made

    def refunds(self) -> list:
        """Every refund, in id order, as the refunds list serves it."""
        with self.lock:
            return [refund for _, refund in self.store.refunds]

    def order_lines(self, order_id: int) -> list:
        """An order's line items as /orders/{id}/products serves them."""
        with self.lock:
            return self.store.order_lines(self.store.streams["orders"].by_id[order_id])

    def order_shipping_addresses(self, order_id: int) -> list:
        """An order's shipping addresses as /orders/{id}/shipping_addresses serves them."""
        with self.lock:
            return self.store.order_shipping_addresses(self.store.streams["orders"].by_id[order_id])

    def order_coupons(self, order_id: int) -> list:
        """An order's coupons as /orders/{id}/coupons serves them."""
        with self.lock:
            return self.store.order_coupons(self.store.streams["orders"].by_id[order_id])

    def schedule(self, change: Change) -> None:
        """Add a change to apply after its data request (at once if that request has already passed)."""
        if change.stream not in STREAMS + ("refunds",):
            raise ValueError(f"unknown stream {change.stream!r}")
        with self.lock:
            self._pending.append(change)
            self._pending.sort(key=lambda c: c.after_request)
            self._apply_changes(self.data_requests)

    def _apply_changes(self, upto: int) -> None:
        """Apply, once each, the changes due after data request `upto`."""
        with self.lock:
            while self._pending and self._pending[0].after_request <= upto:
                change = self._pending.pop(0)
                if change.stream == "refunds":
                    self.add_refunds(change.create)
                    continue
                if change.delete_ids is not None:
                    self.delete(change.stream, ids=change.delete_ids)
                self.delete(change.stream, count=change.delete)
                if change.edit_ids is not None:
                    self.edit(change.stream, ids=change.edit_ids)
                else:
                    self.edit(change.stream, count=change.edit)
                self.create(change.stream, change.create)

    def _serialize(self, stream: str, rec: Record, include: Iterable[str] = ()) -> dict:
        """One record in API form."""
        return self.store.serialize(stream, rec, include, self.base_url, self.options.store_hash)

    def _encoded(self, stream: str, rec: Record, include: Iterable[str] = ()) -> orjson.Fragment:
        """One record as JSON, cached until it is edited: building a record costs far more than
        sending it, and a benchmark should measure the tap, not the sandbox."""
        key = (stream, rec.id, tuple(include))
        cached = self._encoded_cache.get(key)
        if cached is None or cached[0] != (rec.version, rec.modified):
            cached = ((rec.version, rec.modified), orjson.Fragment(orjson.dumps(self._serialize(stream, rec, include))))
            self._encoded_cache[key] = cached
        return cached[1]

    # ----- request handling -----

    def handle(self, handler: BaseHTTPRequestHandler, method_allowed: bool = True) -> None:
        """Answer one request: quota, routing, faults, latency, then log it and apply due changes."""
        arrived = time.time()
        clock = time.perf_counter()
        split = urlsplit(handler.path)
        pairs = parse_qsl(split.query, keep_blank_values=True)
        allowed, rate_headers = self.rate.take()
        slot = self._claim(split.path) if allowed else None
        if not allowed:
            reply = Reply(429, error_body("v3", 429, "Too many requests"), rate_headers)
        elif slot is False:
            reply = Reply(429, error_body("v3", 429, "Too many concurrent requests to this endpoint"), rate_headers)
        elif not method_allowed:
            handler.close_connection = True
            reply = Reply(405, error_body("v3", 405, "The sandbox is read-only: only GET is supported."),
                          rate_headers)
        else:
            try:
                reply = self._route(handler, split.path, pairs, rate_headers)
            except Exception as exc:  # a sandbox bug must answer 500 rather than hang the client
                reply = Reply(500, error_body("v3", 500, f"Sandbox error: {exc!r}"), rate_headers)
        if self.options.latency_ms:
            time.sleep(self.options.latency_ms / 1000.0)
        if slot:
            with self._log_lock:
                self.in_flight[slot] -= 1
        # Logged (and changes applied) before the answer goes out, so a client that has its
        # answer also finds it in the log and the store already changed.
        self._log({"method": handler.command, "path": split.path, "query": split.query,
                   "params": pairs, "status": None if reply.fault == "drop" else reply.status,
                   "time": arrived, "duration_ms": round((time.perf_counter() - clock) * 1000, 3),
                   "fault": reply.fault})
        if reply.data_number:
            # The answer is already built, so applying the change now is "right after it".
            self._apply_changes(reply.data_number)
        self._send(handler, reply)

    def _claim(self, path: str):
        """For an endpoint with its own concurrency limit: its name, once a place is taken (False
        when it is full: the request gets 429). None for the other endpoints."""
        for pattern, name, limit in ENDPOINT_LIMITS:
            if pattern.search(path):
                with self._log_lock:
                    if self.in_flight.get(name, 0) >= self.options.concurrency.get(name, limit):
                        self.over_limit += 1
                        return False
                    self.in_flight[name] = self.in_flight.get(name, 0) + 1
                    self.peak_in_flight[name] = max(self.peak_in_flight.get(name, 0), self.in_flight[name])
                return name
        return None

    def _route(self, handler, path: str, pairs: list, rate: dict) -> Reply:
        """Check store, token, path and scope, then serve the endpoint (with any fault)."""
        match = re.fullmatch(r"/stores/([^/]+)/(v2|v3)(/.*)?", path)
        version = match.group(2) if match else "v3"
        if not match or match.group(1) != self.options.store_hash:
            return Reply(404, error_body(version, 404, "The requested resource was not found."), rate)
        token = handler.headers.get("X-Auth-Token")
        scopes = self.tokens.get(token)
        if scopes is None:
            return Reply(401, error_body("v3", 401, "Unauthorized: the X-Auth-Token was missing or invalid."), rate)
        rest = match.group(3) or ""
        endpoint = self._endpoint(version, rest)
        if endpoint is None:
            if version == "v3" and rest.endswith("/"):
                return Reply(403, orjson.dumps({"status": 403, "title": "Authentication Required",
                                                "type": ERROR_TYPE}), rate)
            return Reply(404, error_body(version, 404, "The requested resource was not found."), rate)
        stream, serve, is_data = endpoint
        if stream and SCOPE_OF[stream] not in scopes:
            return Reply(403, orjson.dumps({"status": 403,
                                            "title": "You don't have a required scope to access the endpoint",
                                            "type": ERROR_TYPE, "errors": {}}), rate)
        number, fault = 0, None
        if is_data:
            with self.lock:
                self.data_requests += 1
                number = self.data_requests
                fault = self._draw_fault(number)
                self._apply_changes(number - 1)
        if fault in ("500", "502", "503", "504"):
            messages = {"500": "Internal Server Error", "502": "Bad Gateway",
                        "503": "Service Unavailable: the store is down for maintenance.", "504": "Gateway Timeout"}
            return Reply(int(fault), error_body(version, int(fault), messages[fault]), rate, fault, number)
        if fault == "429":
            return Reply(429, error_body(version, 429, "Too many requests"), self.rate.refund(rate), fault, number)
        if fault == "429-bare":
            self.rate.refund(rate)
            return Reply(429, b"", {}, fault, number)
        if fault == "drop":
            return Reply(0, b"", {}, fault, number)
        if fault == "stall":
            self._stopping.wait(STALL_S)
            return Reply(0, b"", {}, fault, number)
        if fault == "html":
            return Reply(200, LOGIN_PAGE, dict(rate, **{"Content-Type": "text/html; charset=utf-8"}), fault, number)
        if fault == "redirect":
            where = f"{self.options.redirect_to.rstrip('/')}{path}?{urlencode(pairs)}"
            return Reply(302, b"", dict(rate, Location=where), fault, number)
        try:
            with self.lock:
                status, body = serve(pairs)
        except ApiError as err:
            return Reply(err.status, error_body(version, err.status, err.message, err.errors), rate, None, number)
        if fault in ("no-meta", "null-date") and status == 200:
            body = _spoil(body, fault)
        return Reply(status, body, rate, fault, number)

    def _endpoint(self, version: str, rest: str):
        """(stream, serve function, is a data request) for a path under the store, or None."""
        if version == "v2":
            found = {"/coupons": ("coupons", self._coupons, True),
                     "/coupons/count": ("coupons", lambda p: self._coupons(p, count=True), False),
                     "/orders": ("orders", self._orders, True),
                     "/orders/count": ("orders", lambda p: self._orders(p, count=True), False),
                     "/time": (None, lambda p: (200, orjson.dumps({"time": int(time.time())})), False),
                     "/customer_groups": ("customer_groups",
                                          lambda p: self._v2_pages("customer_groups", {"name", "is_default"}, p), True),
                     "/store": ("store", self._store_info, True),
                     "/gift_certificates": ("gift_certificates", self._gift_certificates, True),
                     "/currencies": ("currencies", lambda p: self._v2_pages("currencies", set(), p), True),
                     "/order_statuses": ("order_statuses", self._order_statuses, True)}.get(rest)
            if found:
                return found
            sub = re.fullmatch(r"/orders/(\d+)/(products|shipping_addresses|shippingaddresses|coupons|consignments|fees)",
                               rest)
            if sub:
                return "orders", lambda p: self._order_sub(int(sub.group(1)), sub.group(2), p), True
            return None
        lists = {"/customers": ("customers", self._customers), "/catalog/products": ("products", self._products),
                 "/orders/payment_actions/refunds": ("refunds", self._refunds),
                 "/catalog/brands": ("brands", self._brands), "/channels": ("channels", self._channels),
                 "/promotions": ("promotions", self._promotions),
                 "/catalog/trees": ("category_trees", self._category_trees),
                 "/catalog/trees/categories": ("categories", self._categories),
                 "/customers/addresses": ("customer_addresses", lambda p: self._derived_pages("customer_addresses", p)),
                 "/catalog/variants": ("product_variants", lambda p: self._derived_pages("product_variants", p))}
        if rest in lists:
            return (*lists[rest], True)
        windows = {"/customers/subscribers": ("subscribers", {"id", "id:in", "email", "source", "order_id"}),
                   "/customers/attributes": ("customer_attributes", {"name", "type"}),
                   "/customers/attribute-values": ("customer_attribute_values", {"customer_id:in", "attribute_id:in"}),
                   "/pricelists": ("price_lists", {"id:in", "name"})}
        if rest in windows:
            stream, names = windows[rest]
            return stream, lambda p: self._modified_pages(stream, names, p), True
        metafields = {"/catalog/products/metafields": "product_metafields", "/orders/metafields": "order_metafields",
                      "/customers/metafields": "customer_metafields"}
        if rest in metafields:
            return metafields[rest], lambda p: self._metafields(metafields[rest], p), True
        sub = re.fullmatch(r"/(promotions|pricelists)/(\d+)/(codes|records)", rest)
        if sub and (sub.group(1), sub.group(3)) in (("promotions", "codes"), ("pricelists", "records")):
            stream = "promotion_codes" if sub.group(1) == "promotions" else "price_list_records"
            return stream, lambda p: self._owned(stream, int(sub.group(2)), p), True
        return None

    def _bounds(self, stream: str, query: "Query", low: str, high: str, **kwargs) -> tuple:
        """A date range's bounds as inclusive datetimes; strict bounds move in by a second (the
        sandbox's dates are whole seconds, so `> t` is `>= t + 1 s`)."""
        lo, hi = query.date(low, **kwargs), query.date(high, **kwargs)
        strict = self.options.exclusive_bounds
        if strict == "all" or stream in strict:
            lo = lo and lo + dt.timedelta(seconds=1)
            hi = hi and hi - dt.timedelta(seconds=1)
        return lo, hi

    def _draw_fault(self, number: int) -> Optional[str]:
        """The fault for data request `number`: drawn in arrival order, overridden by faults_at."""
        opts = self.options
        # Always draw the same amount per request so one override does not shift later draws.
        roll = self._fault_rng.random()
        code = self._fault_rng.choice(("500", "502", "503", "504"))
        fault = None
        if roll < opts.drop_rate:
            fault = "drop"
        elif roll < opts.drop_rate + opts.truncate_rate:
            fault = "truncate"
        elif roll < opts.drop_rate + opts.truncate_rate + opts.error_rate:
            fault = code
        return opts.faults_at.get(number, fault)

    # ----- endpoints -----

    def _v2_list(self, records: list) -> tuple[int, bytes]:
        """A v2 answer: a bare array, or 204 with no body when empty."""
        if not records:
            return 204, b""
        return 200, orjson.dumps(records)

    def _orders(self, pairs: list, count: bool = False) -> tuple[int, bytes]:
        """GET /v2/orders and /v2/orders/count."""
        names = {"min_id", "max_id", *V2_DATE_FILTERS} | (
            set() if count else {"page", "limit", "sort", "include", "consignment_structure"})
        query = Query(pairs, "v2", names, self.options.strict)
        modified = self._bounds("orders", query, "min_date_modified", "max_date_modified")
        created = self._bounds("orders", query, "min_date_created", "max_date_created")
        flt = Filter(id_min=query.integer("min_id"), id_max=query.integer("max_id"),
                     mod_min=modified[0], mod_max=modified[1], created_min=created[0], created_max=created[1])
        data = self.store.streams["orders"]
        if count:
            return 200, orjson.dumps({"count": sum(1 for _ in select(data, flt))})
        page, limit = query.page_limit()
        sort_raw = query.get("sort") or "id"
        field_name, _, direction = sort_raw.partition(":")
        keys = {"id": None, "date_modified": None, "date_created": lambda r: r.created,
                "customer_id": lambda r: r.attrs[0], "status_id": lambda r: r.attrs[1]}
        if field_name not in keys or direction not in ("", "asc", "desc"):
            raise ApiError(400, f"The sort value '{sort_raw}' is not valid.")
        rows = page_of(select(data, flt, field_name, direction == "desc", keys[field_name]), page, limit)
        include = self.order_tokens(query.include(ORDER_INCLUDES), query.get("consignment_structure"))
        return self._v2_list([self._encoded("orders", rec, include) for rec in rows])

    def order_tokens(self, include: list, structure: Optional[str]) -> list:
        """What shapes an order's answer: its include= values, the consignment structure and the cap."""
        if structure not in (None, "object"):
            raise ApiError(400, f"The consignment_structure value '{structure}' is not valid.")
        tokens = sorted(include) + (["structure=object"] if structure else [])
        if self.options.embedded_line_cap is not None:
            tokens.append(f"cap={self.options.embedded_line_cap}")
            if self.options.embedded_line_warning:
                tokens.append("warn")
        return tokens

    def _refunds(self, pairs: list) -> tuple[int, bytes]:
        """GET /v3/orders/payment_actions/refunds: id order, page numbers, an empty meta (as documented)."""
        names = {"page", "limit", "created:min", "created:max", "order_id:in", "id:in", "transaction_id"}
        query = Query(pairs, "v3", names, self.options.strict)
        page, limit = query.page_limit()
        low, high = self._bounds("refunds", query, "created:min", "created:max")
        orders, ids = query.id_list("order_id:in"), query.id_list("id:in")
        rows = [refund for created, refund in self.store.refunds
                if (low is None or created >= low) and (high is None or created <= high)
                and (orders is None or refund["order_id"] in orders) and (ids is None or refund["id"] in ids)]
        return 200, orjson.dumps({"data": rows[(page - 1) * limit:page * limit], "meta": {}})

    def _coupons(self, pairs: list, count: bool = False) -> tuple[int, bytes]:
        """GET /v2/coupons and /v2/coupons/count: id order only, no dates to filter on."""
        names = {"min_id", "max_id", "id", "code"} | (set() if count else {"page", "limit"})
        query = Query(pairs, "v2", names, self.options.strict)
        exact = query.integer("id")
        code = query.get("code")
        flt = Filter(id_min=query.integer("min_id"), id_max=query.integer("max_id"),
                     id_in=None if exact is None else {exact},
                     extra=None if code is None else (lambda r: r.attrs[0] == code))
        data = self.store.streams["coupons"]
        if count:
            return 200, orjson.dumps({"count": sum(1 for _ in select(data, flt))})
        page, limit = query.page_limit()
        return self._v2_list([self._encoded("coupons", rec) for rec in page_of(select(data, flt), page, limit)])

    def _order_sub(self, order_id: int, kind: str, pairs: list) -> tuple[int, bytes]:
        """GET /v2/orders/{id}/products|shipping_addresses|coupons: small lists derived from the order;
        /consignments (the consignments object, line items as links unless include= asks for them)
        and /fees ({"fees": [...]}), which are not paged."""
        query = Query(pairs, "v2", {"page", "limit", "include"}, self.options.strict)
        page, limit = query.page_limit()
        rec = self.store.streams["orders"].by_id.get(order_id)
        if rec is None:
            raise ApiError(404, "The requested resource was not found.")
        link = f"{self.base_url}/stores/{self.options.store_hash}/v2/orders/{rec.id}"
        if kind == "consignments":
            full = "consignments.line_items" in query.include({"consignments.line_items"})
            return 200, orjson.dumps(self.store.consignments(rec, link, full))
        if kind == "fees":
            return 200, orjson.dumps({"fees": self.store.fees(rec)})
        if kind == "products":
            rows = self.store.order_lines(rec)
        elif kind == "coupons":
            rows = self.store.order_coupons(rec)
        else:
            rows = self.store.order_shipping_addresses(rec)
        return self._v2_list(rows[(page - 1) * limit:page * limit])

    def _v3_page(self, stream: str, matching: list, page: int, limit: int, include: list) -> dict:
        """The v3 envelope for one page of a page-number listing."""
        rows = matching[(page - 1) * limit:page * limit]
        meta = _page_meta(len(matching), len(rows), page, limit)
        return {"data": [self._encoded(stream, rec, include) for rec in rows], "meta": meta, "_rows": rows}

    def _customers(self, pairs: list) -> tuple[int, bytes]:
        """GET /v3/customers: page numbers or after/before cursors."""
        names = {"page", "limit", "sort", "id:in", "include", "after", "before", *V3_CUSTOMER_DATES}
        query = Query(pairs, "v3", names, self.options.strict)
        page, limit = query.page_limit()
        include = query.include(CUSTOMER_INCLUDES)
        modified = self._bounds("customers", query, "date_modified:min", "date_modified:max", allow_epoch=True)
        created = self._bounds("customers", query, "date_created:min", "date_created:max", allow_epoch=True)
        flt = Filter(id_in=query.id_list("id:in"), mod_min=modified[0], mod_max=modified[1],
                     created_min=created[0], created_max=created[1])
        data = self.store.streams["customers"]
        after, before = query.get("after"), query.get("before")
        if after is not None or before is not None:
            return 200, self._customer_cursor(query, data, flt, after, before, limit, include)
        sort_raw = query.get("sort") or "id:asc"
        field_name, _, direction = sort_raw.partition(":")
        keys = {"id": None, "date_modified": None, "date_created": lambda r: r.created,
                "last_name": lambda r: r.attrs[1]}
        if field_name not in keys or direction not in ("asc", "desc"):
            raise ApiError(422, f"The sort value '{sort_raw}' is not valid.", {"sort": sort_raw})
        matching = list(select(data, flt, field_name, direction == "desc", keys[field_name]))
        envelope = self._v3_page("customers", matching, page, limit, include)
        rows = envelope.pop("_rows")
        if page == 1:
            envelope["meta"]["cursor_pagination"] = self._cursor_meta(rows, limit, len(matching) > len(rows))
        return 200, orjson.dumps(envelope)

    def _customer_cursor(self, query: Query, data: StreamData, flt: Filter, after: Optional[str],
                         before: Optional[str], limit: int, include: list, stream: str = "customers") -> bytes:
        """A cursor page (customers, metafields): keyset on id, ascending, still honouring the other filters."""
        if query.get("sort") is not None:
            raise ApiError(422, "The sort parameter cannot be combined with a cursor (after/before).",
                           {"sort": query.get("sort")})
        if after is not None and before is not None:
            raise ApiError(422, "Give either after or before, not both.", {"after": after, "before": before})
        raw = after if after is not None else before
        try:
            pivot = decode_cursor(raw)
        except (ValueError, TypeError, KeyError, binascii.Error, orjson.JSONDecodeError):
            raise ApiError(422, f"The cursor '{raw}' is not valid.", {"after" if after else "before": raw}) from None
        if after is not None:
            start = bisect.bisect_right(data.ids, pivot)
            found = list(itertools.islice((r for r in map(data.by_id.__getitem__, data.ids[start:]) if flt(r)),
                                          limit + 1))
            rows, more = found[:limit], len(found) > limit
        else:
            end = bisect.bisect_left(data.ids, pivot)
            found = list(itertools.islice((r for r in map(data.by_id.__getitem__, reversed(data.ids[:end]))
                                           if flt(r)), limit + 1))
            rows, more = list(reversed(found[:limit])), len(found) > limit
        meta = self._cursor_meta(rows, limit, more if after is not None else True)
        if before is not None and not more:
            meta["links"].pop("previous", None)
        body = {"data": [self._encoded(stream, rec, include) for rec in rows],
                "meta": {"cursor_pagination": meta}}
        return orjson.dumps(body)

    @staticmethod
    def _cursor_meta(rows: list, limit: int, has_next: bool) -> dict:
        """meta.cursor_pagination for a page of a cursor list."""
        start = encode_cursor(rows[0].id) if rows else None
        end = encode_cursor(rows[-1].id) if rows else None
        links = {"current": f"?limit={limit}"}
        if start:
            links["previous"] = f"?before={quote(start, safe='')}&limit={limit}"
        if end and has_next:
            links["next"] = f"?after={quote(end, safe='')}&limit={limit}"
        return {"count": len(rows), "per_page": limit, "start_cursor": start, "end_cursor": end, "links": links}

    def _products(self, pairs: list) -> tuple[int, bytes]:
        """GET /v3/catalog/products: sort + direction, id keyset filters, include=."""
        names = {"page", "limit", "sort", "direction", "date_modified:min", "date_modified:max",
                 "id:greater", "id:min", "id:max", "id:in", "include"}
        query = Query(pairs, "v3", names, self.options.strict)
        page, limit = query.page_limit()
        include = query.include(PRODUCT_INCLUDES)
        if {"options", "modifiers"} & set(include):
            # The docs: with options or modifiers, results are limited to 10 per page.
            limit = min(limit, 10)
        greater = query.integer("id:greater")
        id_min = query.integer("id:min")
        if greater is not None:
            id_min = max(greater + 1, id_min if id_min is not None else greater + 1)
        modified = self._bounds("products", query, "date_modified:min", "date_modified:max", date_only="now",
                                allow_epoch=True)
        flt = Filter(id_min=id_min, id_max=query.integer("id:max"), id_in=query.id_list("id:in"),
                     mod_min=modified[0], mod_max=modified[1])
        sort_name = query.get("sort") or "id"
        direction = query.get("direction") or "asc"
        keys = {"id": None, "date_modified": None, "name": lambda r: r.attrs[0], "sku": lambda r: r.attrs[1],
                "price": lambda r: r.attrs[2], "calculated_price": lambda r: r.attrs[2],
                "inventory_level": lambda r: r.attrs[3], "is_visible": lambda r: r.attrs[4],
                "total_sold": lambda r: r.attrs[5], "date_last_imported": lambda r: ""}
        if sort_name not in keys:
            raise ApiError(422, f"The sort value '{sort_name}' is not valid.", {"sort": sort_name})
        if direction not in ("asc", "desc"):
            raise ApiError(422, f"The direction value '{direction}' is not valid.", {"direction": direction})
        matching = list(select(self.store.streams["products"], flt, sort_name, direction == "desc", keys[sort_name]))
        envelope = self._v3_page("products", matching, page, limit, include)
        envelope.pop("_rows")
        return 200, orjson.dumps(envelope)

    def _brands(self, pairs: list) -> tuple[int, bytes]:
        """GET /v3/catalog/brands: id filters and page numbers; sort by name only (id order by default)."""
        names = {"page", "limit", "sort", "direction", "id:greater", "id:less", "id:min", "id:max", "id:in", "name"}
        query = Query(pairs, "v3", names, self.options.strict)
        page, limit = query.page_limit()
        low = [v for v in (query.integer("id:min"), _plus(query.integer("id:greater"), 1)) if v is not None]
        high = [v for v in (query.integer("id:max"), _plus(query.integer("id:less"), -1)) if v is not None]
        flt = Filter(id_min=max(low) if low else None, id_max=min(high) if high else None,
                     id_in=query.id_list("id:in"))
        sort_name, direction = query.get("sort"), query.get("direction") or "asc"
        if sort_name not in (None, "name") or direction not in ("asc", "desc"):
            raise ApiError(422, "The sort value is not valid: brands sort by name only.", {"sort": sort_name})
        key = (lambda r: self._serialize("brands", r)["name"]) if sort_name else None
        matching = list(select(self.store.streams["brands"], flt, sort_name or "id", direction == "desc", key))
        return self._v3_body("brands", matching, page, limit)

    def _v2_pages(self, stream: str, names: set, pairs: list) -> tuple[int, bytes]:
        """GET /v2/customer_groups and /v2/currencies: page numbers in id order; no id filter, no
        sort (their other filters are accepted and not applied)."""
        query = Query(pairs, "v2", {"page", "limit"} | names, self.options.strict)
        page, limit = query.page_limit()
        found = select(self.store.streams[stream], Filter())
        return self._v2_list([self._encoded(stream, rec) for rec in page_of(found, page, limit)])

    def _channels(self, pairs: list) -> tuple[int, bytes]:
        """GET /v3/channels: page numbers; without status:in the archived, deleted and terminated
        channels are left out, as the reference says of its default."""
        query = Query(pairs, "v3", {"page", "limit", "status:in", "type:in", "platform:in", "available"},
                      self.options.strict)
        page, limit = query.page_limit()
        wanted = [part for part in (query.get("status:in") or "").split(",") if part]
        if set(wanted) - CHANNEL_FILTER_STATUSES:
            raise ApiError(422, "The status:in value is not valid.", {"status:in": ",".join(wanted)})
        statuses = set(wanted) or CHANNEL_FILTER_STATUSES - {"archived", "deleted", "terminated"}
        flt = Filter(extra=lambda r: self._serialize("channels", r)["status"] in statuses)
        return self._v3_body("channels", list(select(self.store.streams["channels"], flt)), page, limit)

    def _gift_certificates(self, pairs: list) -> tuple[int, bytes]:
        """GET /v2/gift_certificates: min_id/max_id, sort=id with a direction, page numbers."""
        query = Query(pairs, "v2", {"page", "limit", "min_id", "max_id", "sort", "direction", "code", "order_id"},
                      self.options.strict)
        page, limit = query.page_limit()
        if query.get("sort") not in (None, "id") or query.get("direction") not in (None, "asc", "desc"):
            raise ApiError(400, "The sort value is not valid.")
        flt = Filter(id_min=query.integer("min_id"), id_max=query.integer("max_id"))
        found = select(self.store.streams["gift_certificates"], flt, "id", query.get("direction") == "desc")
        return self._v2_list([self._encoded("gift_certificates", rec) for rec in page_of(found, page, limit)])

    def _order_statuses(self, pairs: list) -> tuple[int, bytes]:
        """GET /v2/order_statuses: the whole list, no parameters."""
        Query(pairs, "v2", set(), self.options.strict)
        return 200, orjson.dumps(self.store.order_statuses())

    def _store_info(self, pairs: list) -> tuple[int, bytes]:
        """GET /v2/store: one object, no parameters."""
        Query(pairs, "v2", set(), self.options.strict)
        return 200, orjson.dumps(self.store_info())

    def store_info(self) -> dict:
        """The store's settings as GET /v2/store serves them."""
        return self.store.store_info(self.options.store_hash, self.base_url)

    def _promotions(self, pairs: list) -> tuple[int, bytes]:
        """GET /v3/promotions: page numbers, sort by id (the default), name or start_date, a direction."""
        names = {"page", "limit", "sort", "direction", "id", "name", "code", "currency_code", "redemption_type",
                 "status", "channels", "query"}
        query = Query(pairs, "v3", names, self.options.strict)
        page, limit = query.page_limit()
        sort_name, direction = query.get("sort") or "id", (query.get("direction") or "asc").lower()
        if sort_name not in ("id", "name", "priority", "start_date") or direction not in ("asc", "desc"):
            raise ApiError(422, "The sort value is not valid.", {"sort": sort_name})
        exact = query.integer("id")
        flt = Filter(id_in=None if exact is None else {exact})
        key = None if sort_name == "id" else (lambda r: self._serialize("promotions", r).get(sort_name) or "")
        matching = list(select(self.store.streams["promotions"], flt, sort_name, direction == "desc", key))
        return self._v3_body("promotions", matching, page, limit)

    def _categories(self, pairs: list) -> tuple[int, bytes]:
        """GET /v3/catalog/trees/categories: page numbers only (no sort, no id range), filters by lists."""
        names = {"page", "limit", "category_id:in", "category_id:not_in", "tree_id:in", "tree_id:not_in",
                 "parent_id:in", "parent_id:not_in", "name", "name:like", "is_visible", "keyword"}
        query = Query(pairs, "v3", names, self.options.strict)
        page, limit = query.page_limit()
        trees = query.id_list("tree_id:in")
        flt = Filter(id_in=query.id_list("category_id:in"),
                     extra=None if trees is None else (lambda r: self._serialize("categories", r)["tree_id"] in trees))
        return self._v3_body("categories", list(select(self.store.streams["categories"], flt)), page, limit)

    def _category_trees(self, pairs: list) -> tuple[int, bytes]:
        """GET /v3/catalog/trees: every tree in one answer; filters id:in and channel_id:in, no paging."""
        query = Query(pairs, "v3", {"id:in", "channel_id:in"}, self.options.strict)
        flt = Filter(id_in=query.id_list("id:in"))
        trees = list(select(self.store.streams["category_trees"], flt))
        return self._v3_body("category_trees", trees, 1, max(len(trees), 1))

    def _derived_pages(self, stream: str, pairs: list) -> tuple[int, bytes]:
        """GET /v3/customers/addresses and /v3/catalog/variants: page numbers only (no sort, no
        dates), filtered by their parents' ids and their own."""
        names = {"page", "limit", "id:in", "customer_id:in", "company:in", "name:in", "include"} \
            if stream == "customer_addresses" else {"page", "limit", "id", "sku", "upc", "product_id:in"}
        query = Query(pairs, "v3", names, self.options.strict)
        page, limit = query.page_limit()
        query.include({"formfields"})
        parent = self.store.DERIVED[stream][0]
        wanted = query.id_list("customer_id:in" if parent == "customers" else "product_id:in")
        found = self.store.derived(stream, select(self.store.streams[parent], Filter(id_in=wanted)))
        ids = query.id_list("id:in") if "id:in" in names else ({query.integer("id")} if query.get("id") else None)
        if ids is not None:
            found = [row for row in found if row["id"] in ids]
        rows = found[(page - 1) * limit:page * limit]
        return 200, orjson.dumps({"data": rows, "meta": _page_meta(len(found), len(rows), page, limit)})

    def _modified_pages(self, stream: str, names: set, pairs: list) -> tuple[int, bytes]:
        """The v3 lists that filter on date_modified but cannot sort: page numbers in id order."""
        dates = {"date_created", "date_created:min", "date_created:max", "date_modified", "date_modified:min",
                 "date_modified:max"}
        query = Query(pairs, "v3", {"page", "limit"} | names | dates, self.options.strict)
        page, limit = query.page_limit()
        low, high = self._bounds(stream, query, "date_modified:min", "date_modified:max", allow_epoch=True)
        flt = Filter(id_in=query.id_list("id:in"), mod_min=low, mod_max=high)
        return self._v3_body(stream, list(select(self.store.streams[stream], flt)), page, limit)

    def _metafields(self, stream: str, pairs: list) -> tuple[int, bytes]:
        """GET /v3/{catalog/products,orders,customers}/metafields: date filters, page numbers or
        after/before cursors (keyset on id), no sort but a direction."""
        names = {"page", "limit", "after", "before", "direction", "key", "key:in", "namespace", "namespace:in",
                 "include_fields", "date_created", "date_created:min", "date_created:max", "date_modified",
                 "date_modified:min", "date_modified:max"}
        query = Query(pairs, "v3", names, self.options.strict)
        page, limit = query.page_limit()
        if (query.get("direction") or "asc") != "asc":
            raise ApiError(422, "The sandbox serves metafields in ascending id order only.", {})
        low, high = self._bounds(stream, query, "date_modified:min", "date_modified:max", allow_epoch=True)
        return self._cursor_or_pages(stream, query, Filter(mod_min=low, mod_max=high), page, limit)

    def _cursor_or_pages(self, stream: str, query: "Query", flt: Filter, page: int, limit: int,
                         include: Sequence[str] = ()) -> tuple[int, bytes]:
        """A v3 list that pages by after/before cursors (keyset on id) or page numbers; page
        numbers carry both kinds of paging meta."""
        data = self.store.streams[stream]
        after, before = query.get("after"), query.get("before")
        if after is not None or before is not None:
            return 200, self._customer_cursor(query, data, flt, after, before, limit, list(include), stream)
        matching = list(select(data, flt))
        envelope = self._v3_page(stream, matching, page, limit, list(include))
        rows = envelope.pop("_rows")
        envelope["meta"]["cursor_pagination"] = self._cursor_meta(rows, limit, len(matching) > page * limit)
        return 200, orjson.dumps(envelope)

    def _owned(self, stream: str, owner_id: int, pairs: list) -> tuple[int, bytes]:
        """GET /v3/promotions/{id}/codes (cursor; page numbers deprecated but served; filter code)
        and /v3/pricelists/{id}/records (cursor or page numbers, date filters, include): the
        records under one promotion or price list, in id order; 404 once it is deleted."""
        names = {"page", "limit", "after", "before"}
        if stream == "promotion_codes":
            names |= {"code"}
        else:
            names |= {"include", "variant_id:in", "product_id:in", "currency", "currency:in", "sku", "sku:in",
                      "date_created", "date_created:min", "date_created:max", "date_modified", "date_modified:min",
                      "date_modified:max"}
        query = Query(pairs, "v3", names, self.options.strict)
        page, limit = query.page_limit()
        if owner_id not in self.store.streams[self.store.owner_of(stream)].by_id:
            raise ApiError(404, "The requested resource was not found.")
        include, low, high = [], None, None
        if stream == "price_list_records":
            include = query.include({"bulk_pricing_tiers", "sku"})
            low, high = self._bounds(stream, query, "date_modified:min", "date_modified:max", allow_epoch=True)
        flt = Filter(mod_min=low, mod_max=high, extra=lambda rec: rec.attrs[0] == owner_id)
        return self._cursor_or_pages(stream, query, flt, page, limit, include)

    def _v3_body(self, stream: str, matching: list, page: int, limit: int) -> tuple[int, bytes]:
        """One page of a page-number v3 listing, as an answer."""
        envelope = self._v3_page(stream, matching, page, limit, [])
        envelope.pop("_rows")
        return 200, orjson.dumps(envelope)

    # ----- output -----

    def _send(self, handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        """Write the reply; a drop closes the socket unanswered, a truncate sends half the body."""
        try:
            if reply.fault == "drop":
                handler.close_connection = True
                handler.connection.shutdown(socket.SHUT_RDWR)
                return
            body = reply.body
            close = handler.close_connection
            if reply.fault == "truncate":
                body = body[:len(body) // 2]
                close = True
            handler.send_response(reply.status)
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            if reply.status != 204:
                if body and "Content-Type" not in reply.headers:
                    handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(len(body)))
            if close:
                handler.send_header("Connection", "close")
                handler.close_connection = True
            handler.end_headers()
            if body:
                handler.wfile.write(body)
            handler.wfile.flush()
        except OSError:
            handler.close_connection = True

    def _log(self, entry: dict) -> None:
        """Keep the entry in memory and, if asked, append it as a JSON line."""
        with self._log_lock:
            self.requests.append(entry)
            if self._log_file:
                self._log_file.write(json.dumps(entry) + "\n")
                self._log_file.flush()
