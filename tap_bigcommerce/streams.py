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
CHILD = "child"  # records inside each record of the parent's pages; no request, the parent's bookmark
PER_PARENT = "per_parent"  # a sub-resource fetched for each parent record that has some; the parent's bookmark or table version
CREATED = "created"  # insert-only records by creation date, page by page, re-reading a lookback window
PAGED = "paged"  # a table with page numbers only: read whole, and again until two reads list the same ids
SINGLE = "single"  # one request, no paging: one object (a record per sync) or a whole short list
WINDOW = "window"  # date_modified filters but no sort: [bookmark, sync start] read as PAGED, bookmark moves to the start

NONZERO = "nonzero"  # PER_PARENT: fetched for parents whose field is not zero (rather than equal to a value)

# How deleted records are found where a stream is not read whole (deletions.py; detect_deletions):
COUNT_BY_ID = "count_by_id"  # counts of an id range (v2 /count with min_id/max_id; v3 id:min/id:max), bisected
PROBE_BY_ID = "probe_by_id"  # a count of the whole list, then id:in probes of the delivered ids where it differs
SWEEP = "sweep"  # a count of the whole list, then the list's ids read whole where it differs

# The four read-only scopes every API account for this tap has; a stream that needs another is
# left unselected by discovery, so a sync with no catalog edits works with those four.
BASE_SCOPES = ("Customers", "Marketing", "Orders", "Products")


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
# Refunds take RFC 3339 on created (documented inclusive; widened like every bound all the same).
V3_CREATED = DateFilter("created:min", "created:max", "%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Stream:
    """One BigCommerce list endpoint and how to read it completely."""

    name: str
    api: str  # "v2": bare JSON array, 204 past the end; "v3": {"data", "meta"} envelope
    path: str
    scope: str  # the read-only OAuth scope as the BigCommerce control panel names it
    kind: str = FULL_TABLE
    key: str = "id"
    keys: Tuple[str, ...] = ()  # a key of several fields, where one is not unique on its own
    replication_key: Optional[str] = None  # the date the bookmark follows (INCREMENTAL)
    date_filter: Optional[DateFilter] = None  # how a request bounds the replication key
    sort_by_modified: Tuple[Tuple[str, str], ...] = ()
    sort_by_id: Tuple[Tuple[str, str], ...] = ()
    id_keyset: str = MIN_ID
    include: str = ""  # include= sub-resources that cost no extra request
    params: Tuple[Tuple[str, str], ...] = ()  # other query parameters every request carries
    parent: Optional[str] = None  # CHILD, PER_PARENT: the stream whose records they come with
    take: Optional[str] = None  # CHILD: the function of children.py that takes them from a parent record
    # PER_PARENT: fetched only for parents whose field (first) is NONZERO or equals the value (second).
    when: Optional[Tuple[str, str]] = None
    parent_key: Optional[str] = None  # PER_PARENT: the field that carries the parent's id (added where the API omits it)
    each: Optional[str] = None  # WINDOW: read once per record of this stream, whose id fills {id} in the path
    concurrency: Optional[int] = None  # the endpoint's own limit on requests at once (429 past it)
    deletions: Optional[str] = None  # COUNT_BY_ID, PROBE_BY_ID or SWEEP (full tables need none)
    archived: Optional[str] = None  # a field that is true on a record the store has archived (deleted)
    # Embedded line items are checked against the record's items_total and, where they fall
    # short, fetched whole from this path ({id}: the record's id).
    lines_path: Optional[str] = None
    # Fields the API sends as a string or a number; emitted as strings so a warehouse gets one
    # column type (a string/number union becomes a float column that rejects "ch_123").
    text_fields: Tuple[str, ...] = ()

    @property
    def replication_method(self):
        """The Singer replication method its kind amounts to (a child's is its parent's)."""
        if self.parent:
            return STREAMS_BY_NAME[self.parent].replication_method
        return "FULL_TABLE" if self.kind in (FULL_TABLE, PAGED, SINGLE) else "INCREMENTAL"

    @property
    def key_properties(self):
        """The fields that identify a record."""
        return self.keys or (self.key,)

    def identity(self, record):
        """What identifies a record: its key's value, or a tuple of its keys' values."""
        return tuple(record.get(name) for name in self.keys) if self.keys else record.get(self.key)

    @property
    def family(self):
        """The stream whose pages it is read with: its parent, or itself."""
        return self.parent or self.name


# What every stream read by date window has in common, and the metafields lists besides.
_WINDOW = dict(kind=WINDOW, replication_key="date_modified", date_filter=V3_MODIFIED)
_METAFIELDS = dict(_WINDOW, id_keyset=CURSOR, sort_by_id=(("direction", "asc"),), deletions=SWEEP)

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
        sort_by_id=(), id_keyset=CURSOR, deletions=PROBE_BY_ID,
        include="addresses,storecredit,attributes,formfields",
    ),
    Stream(
        "orders", api="v2", path="orders", scope="Orders",
        kind=INCREMENTAL, replication_key="date_modified", date_filter=V2_MODIFIED,
        sort_by_modified=(("sort", "date_modified:asc"),),
        sort_by_id=(("sort", "id:asc"),), id_keyset=MIN_ID, deletions=COUNT_BY_ID,
        # Line items, consignments and fees come inside each order at no extra request; without
        # consignment_structure=object the API answers a legacy shape it has said it will remove.
        include="consignments.line_items,fees", params=(("consignment_structure", "object"),),
        lines_path="orders/{id}/products", archived="is_deleted",
        text_fields=("payment_provider_id",),
    ),
    Stream(
        "order_line_items", api="v2", path="orders", scope="Orders",
        kind=CHILD, parent="orders", replication_key="date_modified", take="line_items",
    ),
    Stream(
        "order_shipping_addresses", api="v2", path="orders", scope="Orders",
        kind=CHILD, parent="orders", replication_key="date_modified", take="shipping_consignments",
    ),
    Stream(
        "order_coupons", api="v2", path="orders/{id}/coupons", scope="Orders",
        kind=PER_PARENT, parent="orders", replication_key="date_modified", when=("coupon_discount", NONZERO),
        parent_key="order_id",
        text_fields=("amount",),
    ),
    Stream(
        "products", api="v3", path="catalog/products", scope="Products",
        kind=INCREMENTAL, replication_key="date_modified", date_filter=V3_MODIFIED,
        sort_by_modified=(("sort", "date_modified"), ("direction", "asc")),
        sort_by_id=(("sort", "id"), ("direction", "asc")), id_keyset=ID_GREATER, deletions=COUNT_BY_ID,
        # options and modifiers are left out: asking for them caps a page at 10 products.
        include="variants,images,custom_fields,bulk_pricing_rules,primary_image,videos",
    ),
    Stream(
        "refunds", api="v3", path="orders/payment_actions/refunds", scope="Orders",
        # No sort, no id range, no documented paging data: pages in id order (documented), created
        # bounded by the sync's start, a lookback re-read for payments that settle later.
        kind=CREATED, replication_key="created", date_filter=V3_CREATED,
    ),
    Stream(
        "brands", api="v3", path="catalog/brands", scope="Products",
        # No dates; no sort by id either (name only), so the id order the keyset needs is checked
        # on every page rather than asked for.
        kind=FULL_TABLE, id_keyset=ID_GREATER,
    ),
    Stream(
        "customer_groups", api="v2", path="customer_groups", scope="Customers",
        # Page numbers only: no id filter and no sort.
        kind=PAGED, concurrency=40,
    ),
    Stream(
        "channels", api="v3", path="channels", scope="Channel settings",
        # Page numbers only; without status:in the API leaves out archived, deleted and terminated
        # channels, which old orders still point at.
        kind=PAGED,
        params=(("status:in", "prelaunch,active,inactive,connected,disconnected,archived,deleted,terminated"),),
    ),
    Stream(
        "gift_certificates", api="v2", path="gift_certificates", scope="Marketing",
        # No date_modified, and balance and status change silently: the whole table each sync.
        kind=FULL_TABLE, id_keyset=MIN_ID, sort_by_id=(("sort", "id"), ("direction", "asc")),
    ),
    Stream(
        "currencies", api="v2", path="currencies", scope="Information & settings",
        kind=PAGED,  # page numbers only
    ),
    Stream(
        "order_statuses", api="v2", path="order_statuses", scope="Orders",
        kind=SINGLE,  # the whole list in one answer; the endpoint takes no parameters
    ),
    Stream(
        "categories", api="v3", path="catalog/trees/categories", scope="Products",
        # Page numbers only. A category id is unique within its tree; the reference does not say
        # across trees, so the key is both.
        kind=PAGED, keys=("tree_id", "category_id"), concurrency=40,
    ),
    Stream(
        "promotions", api="v3", path="promotions", scope="Marketing",
        # No dates and no id range; current_uses changes silently. Sorted by id, so what is
        # created meanwhile lands on the last page.
        kind=PAGED, params=(("sort", "id"), ("direction", "asc")), concurrency=40,
    ),
    Stream(
        "promotion_codes", api="v3", path="promotions/{id}/codes", scope="Marketing",
        # The codes of each coupon promotion, by cursor (the list's page numbers are deprecated),
        # read whole with their promotion: current_uses changes with no date to show it.
        kind=PER_PARENT, parent="promotions", when=("redemption_type", "COUPON"), parent_key="promotion_id",
        id_keyset=CURSOR, concurrency=10,
    ),
    Stream(
        "category_trees", api="v3", path="catalog/trees", scope="Products",
        kind=SINGLE,  # every tree in one answer; the endpoint takes no paging parameters
    ),
    Stream(
        "product_variants", api="v3", path="catalog/variants", scope="Products",
        # Every variant, every sync: a variant edit does not always move its product's
        # date_modified, so the products' embedded variants can go stale. Page numbers only.
        kind=PAGED,
    ),
    Stream(
        "customer_addresses", api="v3", path="customers/addresses", scope="Customers",
        # Every address: customers embed ten at most. Page numbers only: no sort, no dates.
        kind=PAGED, include="formfields",
    ),
    # Filtered on date_modified but not sortable: each run reads [bookmark, its start] by page
    # number, twice where it takes more than one page (see scan.modified_window).
    Stream("subscribers", api="v3", path="customers/subscribers", scope="Customers", deletions=PROBE_BY_ID, **_WINDOW),
    Stream("customer_attributes", api="v3", path="customers/attributes", scope="Customers", deletions=SWEEP, **_WINDOW),
    Stream("customer_attribute_values", api="v3", path="customers/attribute-values", scope="Customers",
           deletions=SWEEP, **_WINDOW),
    Stream("price_lists", api="v3", path="pricelists", scope="Products", deletions=PROBE_BY_ID, **_WINDOW),
    Stream(
        "price_list_records", api="v3", path="pricelists/{id}/records", scope="Products",
        # No store-wide list: the window is read for every price list (listed whole each run,
        # since a record's edit need not move its list's date_modified).
        keys=("price_list_id", "variant_id", "currency"), each="price_lists", concurrency=10,
        include="bulk_pricing_tiers,sku", **_WINDOW,
    ),
    # Metafields: date filters and a cursor (a keyset on id), so one read of each window.
    Stream("product_metafields", api="v3", path="catalog/products/metafields", scope="Products", **_METAFIELDS),
    Stream("order_metafields", api="v3", path="orders/metafields", scope="Orders", **_METAFIELDS),
    Stream("customer_metafields", api="v3", path="customers/metafields", scope="Customers", **_METAFIELDS),
    Stream(
        "store", api="v2", path="store", scope="Information & settings",
        # The store's settings: its plan, currency, time zone, default channel. Its id is text.
        kind=SINGLE,
    ),
)

STREAMS_BY_NAME = {stream.name: stream for stream in STREAMS}
