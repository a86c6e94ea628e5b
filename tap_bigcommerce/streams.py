"""The streams as data: one row per BigCommerce endpoint the tap reads. No I/O lives here.

Adding a stream means adding a row below and a schema file in schemas/.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

# How a stream pages through one date_modified second, or through a whole full-table stream,
# in id order (keyset paging, so records edited or deleted while we page never shift a page):
MIN_ID = "min_id"  # v2: ?min_id=<last id + 1>
ID_GREATER = "id:greater"  # v3 catalog: ?id:greater=<last id>
CURSOR = "after"  # v3 customers: ?after=<meta.cursor_pagination.end_cursor>


@dataclass(frozen=True)
class Stream:
    """One BigCommerce list endpoint and how to read it completely."""

    name: str
    api: str  # "v2": bare JSON array, 204 past the end; "v3": {"data", "meta"} envelope
    path: str
    scope: str  # the read-only OAuth scope as the BigCommerce control panel names it
    key: str = "id"
    replication_key: Optional[str] = None  # None: FULL_TABLE
    modified_min: str = ""  # filter names for the replication key (inclusive bounds)
    modified_max: str = ""
    modified_format: str = ""  # strftime for filter values, always in UTC
    sort_by_modified: Tuple[Tuple[str, str], ...] = ()
    sort_by_id: Tuple[Tuple[str, str], ...] = ()
    id_keyset: str = MIN_ID
    include: str = ""  # include= sub-resources that cost no extra request
    # Fields the API sends as a string or a number; emitted as strings so a warehouse gets one
    # column type (a string/number union becomes a float column that rejects "ch_123").
    text_fields: Tuple[str, ...] = ()

    @property
    def replication_method(self):
        """INCREMENTAL when the stream has a replication key, else FULL_TABLE."""
        return "INCREMENTAL" if self.replication_key else "FULL_TABLE"


STREAMS = (
    Stream(
        name="coupons",
        api="v2",
        path="coupons",
        scope="Marketing",
        # Coupons have no date_modified and no sort parameter; they come in id order.
        id_keyset=MIN_ID,
    ),
    Stream(
        name="customers",
        api="v3",
        path="customers",
        scope="Customers",
        replication_key="date_modified",
        modified_min="date_modified:min",
        modified_max="date_modified:max",
        modified_format="%Y-%m-%dT%H:%M:%SZ",
        sort_by_modified=(("sort", "date_modified:asc"),),
        # Cursor pages are in id order; the cursor is the only keyset the customers API offers.
        sort_by_id=(),
        id_keyset=CURSOR,
        include="addresses,storecredit,attributes,formfields",
    ),
    Stream(
        name="orders",
        api="v2",
        path="orders",
        scope="Orders",
        replication_key="date_modified",
        modified_min="min_date_modified",
        modified_max="max_date_modified",
        # The v2 docs take ISO 8601 with an offset; the "+" travels as %2B.
        modified_format="%Y-%m-%dT%H:%M:%S+00:00",
        sort_by_modified=(("sort", "date_modified:asc"),),
        sort_by_id=(("sort", "id:asc"),),
        id_keyset=MIN_ID,
        text_fields=("payment_provider_id",),
    ),
    Stream(
        name="products",
        api="v3",
        path="catalog/products",
        scope="Products",
        replication_key="date_modified",
        modified_min="date_modified:min",
        modified_max="date_modified:max",
        # A date without a time gets the current time added by the catalog API: always send both.
        modified_format="%Y-%m-%dT%H:%M:%SZ",
        sort_by_modified=(("sort", "date_modified"), ("direction", "asc")),
        sort_by_id=(("sort", "id"), ("direction", "asc")),
        id_keyset=ID_GREATER,
        # options and modifiers are left out: asking for them caps a page at 10 products.
        include="variants,images,custom_fields,bulk_pricing_rules,primary_image,videos",
    ),
)

STREAMS_BY_NAME = {stream.name: stream for stream in STREAMS}
