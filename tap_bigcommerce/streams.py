"""The streams as data: one row per BigCommerce endpoint the tap reads. No I/O lives here.

Adding a stream means adding a row below and a schema file in schemas/. A row names its kind,
which says how the stream is read (scan.py) and bookmarked (state.py); the sync dispatches on
the kind, never on a stream's name.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

# How a stream pages through one date_modified second, or through a whole full-table stream,
# in id order (keyset paging, so records edited or deleted while we page never shift a page):
MIN_ID = "min_id"  # v2: ?min_id=<last id + 1>
ID_GREATER = "id:greater"  # v3 catalog: ?id:greater=<last id>
CURSOR = "after"  # v3 customers: ?after=<meta.cursor_pagination.end_cursor>

# Stream kinds:
INCREMENTAL = "incremental"  # date_modified ranges in keyset order; bookmark: the newest date written
FULL_TABLE = "full_table"  # the whole table in id order, every sync; a table version per read


@dataclass(frozen=True)
class DateFilter:
    """The query parameters that bound a date, and how their values are written (always UTC)."""

    min: str
    max: str
    format: str


# v3 takes RFC 3339. A date without a time gets the current time added by the catalog API, so
# the time is always sent.
V3_MODIFIED = DateFilter("date_modified:min", "date_modified:max", "%Y-%m-%dT%H:%M:%SZ")
# The v2 docs take ISO 8601 with an offset; the "+" travels as %2B.
V2_MODIFIED = DateFilter("min_date_modified", "max_date_modified", "%Y-%m-%dT%H:%M:%S+00:00")


@dataclass(frozen=True)
class Stream:
    """One BigCommerce list endpoint and how to read it completely."""

    name: str
    api: str  # "v2": bare JSON array, 204 past the end; "v3": {"data", "meta"} envelope
    path: str
    scope: str  # the read-only OAuth scope as the BigCommerce control panel names it
    kind: str = FULL_TABLE
    key: str = "id"
    replication_key: Optional[str] = None  # the date the bookmark follows (INCREMENTAL)
    date_filter: Optional[DateFilter] = None  # how a request bounds the replication key
    sort_by_modified: Tuple[Tuple[str, str], ...] = ()
    sort_by_id: Tuple[Tuple[str, str], ...] = ()
    id_keyset: str = MIN_ID
    include: str = ""  # include= sub-resources that cost no extra request
    # Fields the API sends as a string or a number; emitted as strings so a warehouse gets one
    # column type (a string/number union becomes a float column that rejects "ch_123").
    text_fields: Tuple[str, ...] = ()

    @property
    def replication_method(self):
        """The Singer replication method its kind amounts to."""
        return "INCREMENTAL" if self.kind == INCREMENTAL else "FULL_TABLE"


STREAMS = (
    Stream(
        "coupons", api="v2", path="coupons", scope="Marketing",
        # Coupons have no date_modified and no sort parameter; they come in id order.
        kind=FULL_TABLE, id_keyset=MIN_ID,
    ),
    Stream(
        "customers", api="v3", path="customers", scope="Customers",
        kind=INCREMENTAL, replication_key="date_modified", date_filter=V3_MODIFIED,
        sort_by_modified=(("sort", "date_modified:asc"),),
        # Cursor pages are in id order; the cursor is the only keyset the customers API offers.
        sort_by_id=(), id_keyset=CURSOR,
        include="addresses,storecredit,attributes,formfields",
    ),
    Stream(
        "orders", api="v2", path="orders", scope="Orders",
        kind=INCREMENTAL, replication_key="date_modified", date_filter=V2_MODIFIED,
        sort_by_modified=(("sort", "date_modified:asc"),),
        sort_by_id=(("sort", "id:asc"),), id_keyset=MIN_ID,
        text_fields=("payment_provider_id",),
    ),
    Stream(
        "products", api="v3", path="catalog/products", scope="Products",
        kind=INCREMENTAL, replication_key="date_modified", date_filter=V3_MODIFIED,
        sort_by_modified=(("sort", "date_modified"), ("direction", "asc")),
        sort_by_id=(("sort", "id"), ("direction", "asc")), id_keyset=ID_GREATER,
        # options and modifiers are left out: asking for them caps a page at 10 products.
        include="variants,images,custom_fields,bulk_pricing_rules,primary_image,videos",
    ),
)

STREAMS_BY_NAME = {stream.name: stream for stream in STREAMS}
