"""Deterministic store data for the sandbox: compact records and their API serialization.

Every record is kept as a small `Record` (id, seed, created, modified, version, a few sortable
attributes); the full API object is rebuilt from the record's seed when a request asks for it, so a
store of 100,000 orders stays small in memory. Dates are aware UTC datetimes with whole seconds,
because BigCommerce dates carry no fractions.
"""
from __future__ import annotations

import bisect
import datetime as dt
import itertools
import random
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Sequence

UTC = dt.timezone.utc
STREAMS = ("coupons", "customers", "orders", "products", "brands", "customer_groups", "channels",
           "gift_certificates", "currencies", "promotions", "category_trees", "subscribers", "customer_attributes",
           "customer_attribute_values", "price_lists", "product_metafields", "order_metafields",
           "customer_metafields", "categories", "promotion_codes", "price_list_records")
CHANNEL_STATUSES = ("active", "active", "inactive", "prelaunch", "connected", "disconnected", "archived", "deleted",
                    "terminated")
DATA_START = dt.datetime(2023, 1, 1, tzinfo=UTC)

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

FIRST_NAMES = ("Jane", "John", "Maria", "Wei", "Aisha", "Lucas", "Olivia", "Noah", "Emma", "Liam",
               "Sofia", "Mateo", "Chloe", "Arjun", "Yuki", "Fatima", "Omar", "Hannah", "Ivan", "Zoe")
LAST_NAMES = ("Doe", "Smith", "Garcia", "Chen", "Khan", "Müller", "Rossi", "Nguyen", "Brown",
              "O'Neil", "Kowalski", "Silva", "Tanaka", "Dubois", "Jensen", "Okafor", "Novak", "Reyes")
PLACES = (("Austin", "Texas", "78751", "United States", "US"),
          ("Portland", "Oregon", "97201", "United States", "US"),
          ("Toronto", "Ontario", "M5V 2T6", "Canada", "CA"),
          ("Sydney", "New South Wales", "2000", "Australia", "AU"),
          ("London", "England", "SW1A 1AA", "United Kingdom", "GB"),
          ("Berlin", "Berlin", "10115", "Germany", "DE"))
STREETS = ("Main Street", "Oak Avenue", "Elm Road", "Harbour Lane", "King Street", "Maple Drive")
ADJECTIVES = ("Classic", "Organic", "Handmade", "Vintage", "Compact", "Deluxe", "Rustic", "Smart")
NOUNS = ("Le Parfait Jar", "Tea Towel", "Water Bottle", "Desk Lamp", "Backpack", "Mug", "Candle",
         "Notebook", "Chair", "Sneakers", "Scarf", "Coffee Grinder")
_SHIPPING_MONEY = ("base_cost", "cost_ex_tax", "cost_inc_tax", "cost_tax", "base_handling_cost",
                   "handling_cost_ex_tax", "handling_cost_inc_tax", "handling_cost_tax")
ORDER_STATUSES = {0: "Incomplete", 1: "Pending", 2: "Shipped", 3: "Partially Shipped", 4: "Refunded",
                  5: "Cancelled", 6: "Declined", 7: "Awaiting Payment", 8: "Awaiting Pickup",
                  9: "Awaiting Shipment", 10: "Completed", 11: "Awaiting Fulfillment",
                  12: "Manual Verification Required", 13: "Disputed", 14: "Partially Refunded"}
# Weights make finished orders common, as in a real store.
_STATUS_WEIGHTS = (2, 3, 20, 2, 2, 3, 1, 3, 1, 4, 30, 20, 1, 1, 2)
COUPON_TYPES = ("per_item_discount", "percentage_discount", "per_total_discount",
                "shipping_discount", "free_shipping", "promotion")
PAYMENT_METHODS = ("Credit Card", "PayPal", "Cash on Delivery", "Bank Deposit", "Store Credit")
PAYMENT_STATUSES = ("authorized", "captured", "paid", "pending", "refunded", "")


def rfc2822(value: dt.datetime) -> str:
    """Format an aware UTC datetime the way v2 bodies do: `Wed, 05 Dec 2018 20:16:55 +0000`."""
    return (f"{_DAYS[value.weekday()]}, {value.day:02d} {_MONTHS[value.month - 1]} {value.year} "
            f"{value.hour:02d}:{value.minute:02d}:{value.second:02d} +0000")


def iso_z(value: dt.datetime) -> str:
    """Format an aware UTC datetime the way v3 customers do: `2020-02-07T19:58:03Z`."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_offset(value: dt.datetime) -> str:
    """Format an aware UTC datetime the way v3 products do: `2018-09-05T20:42:07+00:00`."""
    return value.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def money(cents: int) -> str:
    """Format an amount in cents as a v2 money string with 4 decimals (`"336.3200"`)."""
    return f"{cents // 100}.{cents % 100:02d}00" if cents >= 0 else "-" + money(-cents)


def now_utc() -> dt.datetime:
    """Return the current time as an aware UTC datetime with whole seconds."""
    return dt.datetime.now(UTC).replace(microsecond=0)


class Record:
    """One record of a stream: identity, dates, edit count and the attributes a sort needs."""

    __slots__ = ("id", "seed", "created", "modified", "version", "attrs")

    def __init__(self, rid: int, seed: int, created: dt.datetime, modified: dt.datetime, attrs: tuple):
        self.id = rid
        self.seed = seed
        self.created = created
        self.modified = modified
        self.version = 0
        self.attrs = attrs


class StreamData:
    """The records of one stream, with ids in ascending order and a sorted (date_modified, id) index."""

    def __init__(self, name: str):
        self.name = name
        self.by_id: dict[int, Record] = {}
        self.ids: list[int] = []
        self.mod_index: list[tuple[dt.datetime, int]] = []
        self.next_id = 1

    def load(self, records: Sequence[Record]) -> None:
        """Add many records at once (ids ascending) and build the index in one sort."""
        for rec in records:
            self.by_id[rec.id] = rec
            self.ids.append(rec.id)
            self.next_id = max(self.next_id, rec.id + 1)
        self.mod_index = sorted((r.modified, r.id) for r in self.by_id.values())

    def add(self, rec: Record) -> None:
        """Add one record whose id is larger than any before."""
        self.by_id[rec.id] = rec
        self.ids.append(rec.id)
        self.next_id = rec.id + 1
        bisect.insort(self.mod_index, (rec.modified, rec.id))

    def remove(self, rid: int) -> None:
        """Delete a record: it simply vanishes from every list."""
        rec = self.by_id.pop(rid)
        del self.ids[bisect.bisect_left(self.ids, rid)]
        del self.mod_index[bisect.bisect_left(self.mod_index, (rec.modified, rid))]

    def touch(self, rid: int, when: dt.datetime) -> None:
        """Mark a record edited at `when`: date_modified moves and the index follows."""
        rec = self.by_id[rid]
        del self.mod_index[bisect.bisect_left(self.mod_index, (rec.modified, rid))]
        rec.modified = when
        rec.version += 1
        bisect.insort(self.mod_index, (when, rid))

    def oldest(self, count: int) -> list[int]:
        """Return the ids of the `count` records with the smallest (date_modified, id)."""
        return [rid for _, rid in self.mod_index[:count]]

    def ids_between(self, lo: Optional[int], hi: Optional[int]) -> Sequence[int]:
        """Return the ids in [lo, hi] (either bound optional), ascending."""
        start = 0 if lo is None else bisect.bisect_left(self.ids, lo)
        end = len(self.ids) if hi is None else bisect.bisect_right(self.ids, hi)
        return self.ids[start:end]

    def ids_by_modified(self, lo: Optional[dt.datetime], hi: Optional[dt.datetime],
                        descending: bool = False) -> Iterator[int]:
        """Yield ids with lo <= date_modified <= hi by date_modified; ties always by id ascending."""
        idx = self.mod_index
        start = 0 if lo is None else bisect.bisect_left(idx, (lo,))
        end = len(idx) if hi is None else bisect.bisect_right(idx, (hi, float("inf")))
        if not descending:
            return (rid for _, rid in itertools.islice(idx, start, end))
        groups = itertools.groupby((idx[i] for i in range(end - 1, start - 1, -1)), key=lambda k: k[0])
        return (rid for _, grp in groups for rid in sorted(k[1] for k in grp))


def _mix(*parts: int) -> int:
    """Combine integers into one 64-bit seed, stable across runs (unlike hash())."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = ((value ^ (part & 0xFFFFFFFFFFFFFFFF)) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
        value ^= value >> 29
    return value


_SMALL_STREAMS = ("brands", "customer_groups", "channels", "gift_certificates", "currencies", "promotions",
                  "category_trees", "subscribers", "customer_attributes", "customer_attribute_values", "price_lists",
                  "product_metafields", "order_metafields", "customer_metafields", "categories", "promotion_codes",
                  "price_list_records")
_CURRENCIES = ("USD", "EUR", "GBP")
_STATUS_TABLE = tuple(status for status, weight in enumerate(_STATUS_WEIGHTS) for _ in range(weight))
_CODE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def _attrs(stream: str, seed: int, rid: int) -> tuple:
    """Derive the attributes that filters and sorts read from bits of the seed (fast for 100,000 records)."""
    if stream == "orders":
        customer = 0 if seed % 100 < 15 else (seed >> 8) % 5000 + 1
        return (customer, _STATUS_TABLE[(seed >> 24) % len(_STATUS_TABLE)])
    if stream == "customers":
        return (FIRST_NAMES[seed % len(FIRST_NAMES)], LAST_NAMES[(seed >> 8) % len(LAST_NAMES)])
    if stream == "coupons":
        return ("".join(_CODE_LETTERS[(seed >> (5 * n)) & 31] for n in range(8)) + str(rid),)
    if stream in _SMALL_STREAMS:
        return ()
    name = f"{ADJECTIVES[seed % len(ADJECTIVES)]} {NOUNS[(seed >> 8) % len(NOUNS)]} {rid}"
    price = ((seed >> 16) % 49800 + 199) / 100
    return (name, f"SKU-{rid:05d}", price, (seed >> 32) % 501, (seed >> 42) % 10 != 0, (seed >> 48) % 901)


@dataclass
class StoreSpec:
    """What to generate: the seed, record counts, same-second clusters and the end of the date range."""

    seed: int = 1
    counts: dict = None
    same_second: dict = None
    data_end: Optional[dt.datetime] = None


class StoreData:
    """All four streams of one sandbox store, generated from a seed, plus API serialization."""

    def __init__(self, spec: StoreSpec):
        self.seed = spec.seed
        self.refunds: list = []  # (created, refund) in id order
        self.archived: set = set()  # ids of archived orders: still listed, with is_deleted true
        self.refunds_of: dict = {}  # order id -> its refunds
        self._refund_rng = random.Random(_mix(spec.seed, 77))
        self.end = (spec.data_end or (now_utc() - dt.timedelta(hours=1))).astimezone(UTC).replace(microsecond=0)
        self.start = min(DATA_START, self.end - dt.timedelta(days=30))
        self.streams = {name: StreamData(name) for name in STREAMS}
        counts = spec.counts or {}
        # What other records point at: products at brands, customers at groups, orders at channels.
        self.brand_count = int(counts.get("brands", 0))
        self.group_count = int(counts.get("customer_groups", 0))
        self.channel_count = max(int(counts.get("channels", 0)), 1)
        self.tree_count = max(int(counts.get("category_trees", 0)), 1)
        self.promotion_count = int(counts.get("promotions", 0))
        # Products sit in two of the store's categories (by category id), or of 18-39 in a store without.
        categories = int(counts.get("categories", 0))
        self._category_ids = range(1, categories + 1) if categories >= 2 else range(18, 40)
        self.price_list_count = max(int(counts.get("price_lists", 0)), 1)
        same = spec.same_second or {}
        for number, name in enumerate(STREAMS):
            self._generate(number, name, int(counts.get(name, 0)), int(same.get(name, 0)))
        self._generate_refunds(int(counts.get("refunds", 0)))

    def _generate_refunds(self, count: int) -> None:
        """Refunds on random orders, each created between its order's creation and last edit."""
        orders = self.streams["orders"]
        if not orders.ids:
            return
        rng = self._refund_rng
        picks = []
        for _ in range(count):
            rec = orders.by_id[rng.choice(orders.ids)]
            span = int((rec.modified - rec.created).total_seconds())
            picks.append((rec.created + dt.timedelta(seconds=int(rng.random() * span)), rec.id))
        for created, order_id in sorted(picks):
            self.add_refund(orders.by_id[order_id], created)

    def add_refund(self, rec: Record, created: dt.datetime) -> dict:
        """Refund one unit of the order's first line; ids ascend with creation, as the API lists them."""
        rng = self._refund_rng
        line = self.order_lines(rec)[0]
        amount = float(line["price_inc_tax"])
        refund_id = len(self.refunds) + 1
        refund = {"id": refund_id, "order_id": rec.id, "user_id": 0, "created": iso_offset(created),
                  "reason": rng.choice(("Damaged", "Wrong size", "Changed mind")), "total_amount": amount,
                  "total_tax": 0.0, "uses_merchant_override_values": False,
                  "items": [{"item_type": "PRODUCT", "item_id": line["id"], "reason": "", "quantity": 1,
                             "requested_amount": None}],
                  "payments": [{"id": refund_id, "provider_id": "braintree", "amount": amount, "offline": False,
                                "is_declined": False, "declined_message": ""}]}
        self.refunds.append((created, refund))
        self.refunds_of.setdefault(rec.id, []).append(refund)
        return refund

    def _generate(self, number: int, name: str, count: int, same: int) -> None:
        """Generate `count` records spread over the range plus `same` records sharing one second."""
        rng = random.Random(_mix(self.seed, number))
        span = int((self.end - self.start).total_seconds())
        rand = rng.random
        created = sorted(int(rand() * span) for _ in range(count))
        records = []
        for i, offset in enumerate(created, start=1):
            made = self.start + dt.timedelta(seconds=offset)
            # Many records are never touched after creation; the rest were edited later.
            later = 0 if rand() < 0.4 else int(rand() * (span - offset + 1))
            records.append(self.new_record(name, i, made, made + dt.timedelta(seconds=later)))
        # The cluster sits in the middle of the range so ordinary records come before and after it.
        second = self.start + dt.timedelta(seconds=span // 2)
        for i in range(count + 1, count + same + 1):
            made = second - dt.timedelta(seconds=rng.randrange(30 * 86400))
            records.append(self.new_record(name, i, made, second))
        self.streams[name].load(records)

    def new_record(self, stream: str, rid: int, created: dt.datetime, modified: dt.datetime) -> Record:
        """Build the compact record for `rid`; its content depends only on the seed, stream and id."""
        seed = _mix(self.seed, STREAMS.index(stream) + 11, rid)
        return Record(rid, seed, created, modified, self._owner(stream, seed) or _attrs(stream, seed, rid))

    def _owner(self, stream: str, seed: int) -> tuple:
        """The record a promotion code or a price-list record belongs to: codes are under coupon
        promotions (the odd ids), price records under any price list."""
        if stream == "promotion_codes":
            return (2 * (seed % max((self.promotion_count + 1) // 2, 1)) + 1,)
        if stream == "price_list_records":
            return (1 + seed % self.price_list_count,)
        return ()

    def owner_of(self, stream: str) -> Optional[str]:
        """The stream whose records this stream's records belong to (their lists are under them)."""
        return {"promotion_codes": "promotions", "price_list_records": "price_lists"}.get(stream)

    def create(self, stream: str, count: int, when: dt.datetime) -> list[int]:
        """Append `count` new records created and modified at `when`; return their ids."""
        data = self.streams[stream]
        made = []
        for _ in range(count):
            rid = data.next_id
            data.add(self.new_record(stream, rid, when, when))
            made.append(rid)
        return made

    # ----- serialization -----

    def serialize(self, stream: str, rec: Record, include: Iterable[str] = (), base_url: str = "",
                  store_hash: str = "sandbox") -> dict:
        """Return the record as the API would send it (with the `include=` extras asked for)."""
        if stream == "orders":
            return self.order(rec, base_url, store_hash, set(include))
        if stream == "coupons":
            return self.coupon(rec)
        if stream == "customers":
            return self.customer(rec, set(include))
        if stream == "price_list_records":
            return self.price_record(rec, set(include))
        if stream in self._SMALL:
            return getattr(self, self._SMALL[stream])(rec)
        return self.product(rec, set(include))

    _SMALL = {"brands": "brand", "customer_groups": "customer_group", "channels": "channel",
              "gift_certificates": "gift_certificate", "currencies": "currency", "promotions": "promotion",
              "category_trees": "category_tree", "subscribers": "subscriber", "customer_attributes": "attribute",
              "customer_attribute_values": "attribute_value", "price_lists": "price_list",
              "product_metafields": "metafield", "order_metafields": "metafield", "customer_metafields": "metafield",
              "categories": "category", "promotion_codes": "promotion_code", "price_list_records": "price_record"}

    def promotion_code(self, rec: Record) -> dict:
        """Serialize a coupon code as GET /v3/promotions/{id}/codes does: no promotion id (the path
        has it), and current_uses moves with no date to show it."""
        code = "".join(_CODE_LETTERS[(rec.seed >> (5 * n)) & 31] for n in range(10))
        return {"id": rec.id, "code": f"{code}{rec.id}", "current_uses": rec.seed % 40 + rec.version,
                "max_uses": (0, 100, 1000)[rec.seed % 3], "max_uses_per_customer": (0, 1)[rec.seed % 2],
                "created": iso_offset(rec.created)}

    def price_record(self, rec: Record, include: Iterable[str] = ()) -> dict:
        """Serialize a price-list record as GET /v3/pricelists/{id}/records does: keyed by its list,
        variant and currency; an edit changes its price."""
        cents = (rec.seed >> 8) % 40000 + 199 + 25 * rec.version
        price = cents / 100
        row = {"price_list_id": rec.attrs[0], "variant_id": rec.id, "product_id": (rec.seed >> 24) % 5000 + 1,
               "currency": _CURRENCIES[rec.seed % 3],
               "price": price, "sale_price": round(price * 0.9, 2) if rec.seed % 4 == 0 else None,
               "retail_price": round(price * 1.2, 2), "map_price": None, "calculated_price": price}
        row.update(self._dates(rec))
        if "sku" in include:
            row["sku"] = f"SKU-{rec.id:05d}-{row['currency']}"
        if "bulk_pricing_tiers" in include:
            row["bulk_pricing_tiers"] = [{"quantity_min": 10, "quantity_max": 49, "type": "percent", "amount": 5}] \
                if rec.seed % 5 == 0 else []
        return row

    def category(self, rec: Record) -> dict:
        """Serialize a category as GET /v3/catalog/trees/categories does: no `id`, but a
        category_id and the tree it is in; a few categories sit under an earlier one."""
        rng = self._rng(rec)
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}s"
        slug = name.lower().replace(" ", "-")
        return {"category_id": rec.id, "category_uuid": f"{rec.seed:032x}"[:32],
                "tree_id": 1 + rec.seed % self.tree_count,
                "parent_id": 0 if rec.id < 5 or rng.random() < 0.6 else rng.randint(1, rec.id - 1), "name": name,
                "description": f"<p>{name}</p>", "views": rng.randint(0, 5000), "sort_order": rec.id,
                "page_title": name, "meta_keywords": [slug], "meta_description": "", "layout_file": "category.html",
                "image_url": "", "is_visible": rng.random() < 0.9, "search_keywords": slug.replace("-", ","),
                "default_product_sort": "use_store_settings",
                "url": {"path": f"/{slug}-{rec.id}/", "is_customized": rec.version > 0}}

    def metafield(self, rec: Record) -> dict:
        """Serialize a metafield as the store-wide metafields lists do (the resource type is the
        record's seed's: the sandbox keeps one list per resource type)."""
        kind = ("product", "order", "customer")[rec.seed % 3]
        return dict({"id": rec.id, "key": f"field_{rec.seed % 40}", "value": f"value {rec.version}",
                     "namespace": ("erp", "shipping", "marketing")[rec.seed % 3 if rec.id % 2 else 0],
                     "permission_set": ("app_only", "read", "write")[rec.seed % 3], "resource_type": kind,
                     "resource_id": rec.seed % 500 + 1, "description": "", "owner_client_id": "sandbox-client"},
                    **self._dates(rec))

    @staticmethod
    def _dates(rec: Record) -> dict:
        return {"date_created": iso_z(rec.created), "date_modified": iso_z(rec.modified)}

    def subscriber(self, rec: Record) -> dict:
        """Serialize a newsletter subscriber as GET /v3/customers/subscribers does."""
        person = self._person(self._rng(rec))
        return dict({"id": rec.id, "email": f"sub{rec.id}.{person['email']}", "first_name": person["first_name"],
                     "last_name": person["last_name"], "source": ("storefront", "order", "custom")[rec.seed % 3],
                     "order_id": None if rec.seed % 3 != 1 else rec.seed % 5000 + 1, "channel_id": 1,
                     "consents": []}, **self._dates(rec))

    def attribute(self, rec: Record) -> dict:
        """Serialize a customer attribute (a definition) as GET /v3/customers/attributes does."""
        kind = ("string", "number", "date")[rec.seed % 3]
        return dict({"id": rec.id, "name": f"{kind.title()} field {rec.id}", "type": kind}, **self._dates(rec))

    def attribute_value(self, rec: Record) -> dict:
        """Serialize a customer attribute value as GET /v3/customers/attribute-values does."""
        return dict({"id": rec.id, "attribute_id": rec.seed % 5 + 1, "customer_id": rec.seed % 150 + 1,
                     "attribute_value": ("gold", "42", "2024-01-31", "yes")[rec.seed % 4 if not rec.version else 3]},
                    **self._dates(rec))

    def price_list(self, rec: Record) -> dict:
        """Serialize a price list as GET /v3/pricelists does."""
        return dict({"id": rec.id, "name": f"{('Wholesale', 'VIP', 'Staff')[rec.seed % 3]} prices {rec.id}",
                     "active": rec.seed % 5 != 0}, **self._dates(rec))

    def promotion(self, rec: Record) -> dict:
        """Serialize a promotion as GET /v3/promotions does: no created or modified date, and
        current_uses moves with no date to show it."""
        rng = self._rng(rec)
        rng.random()
        coupon = rec.id % 2 == 1  # promotion codes sit under the odd ids
        percent = rng.choice((5, 10, 15, 20))
        return {"id": rec.id, "redemption_type": "COUPON" if coupon else "AUTOMATIC",
                "name": f"{percent}% off {rng.choice(NOUNS)} {rec.id}", "display_name": f"{percent}% off",
                "channels": [{"id": 1}], "customer": {"group_ids": [], "minimum_order_count": 0,
                                                      "excluded_group_ids": [], "segments": None},
                "rules": [{"action": {"cart_value": {"discount": {"percentage_amount": str(percent)}}},
                           "apply_once": True, "stop": False}],
                "current_uses": rng.randint(0, 500) + rec.version, "max_uses": rng.choice((None, 1000)),
                "status": rng.choice(("ENABLED", "ENABLED", "DISABLED")),
                "start_date": iso_offset(rec.created), "end_date": None, "stop": False,
                "can_be_used_with_other_promotions": rng.random() < 0.3, "currency_code": "USD",
                "notifications": [], "shipping_address": None, "schedule": None,
                "created_from": rng.choice(("react_ui", "api")),
                "coupon_overrides_automatic_when_offering_higher_discounts": False,
                "coupon_type": "SINGLE" if coupon else None}

    def category_tree(self, rec: Record) -> dict:
        """Serialize a category tree as GET /v3/catalog/trees does; tree n belongs to channel n."""
        return {"id": rec.id, "name": "Default" if rec.id == 1 else f"Channel {rec.id} catalog",
                "channels": [rec.id]}

    # Lists of records that live inside others: (the parent stream, the include that embeds them).
    DERIVED = {"customer_addresses": ("customers", "addresses"), "product_variants": ("products", "variants")}

    def derived(self, stream: str, parents: Iterable[Record]) -> list[dict]:
        """Every record of a derived list for these parents, in id order: every address of the
        customers (GET /v3/customers/addresses; customers embed ten at most), every variant of the
        products (GET /v3/catalog/variants)."""
        parent, key = self.DERIVED[stream]
        found = [row for rec in parents for row in self.serialize(parent, rec, {key})[key]]
        return sorted(found, key=lambda row: row["id"])

    def gift_certificate(self, rec: Record) -> dict:
        """Serialize a gift certificate as GET /v2/gift_certificates does: money as text, dates as
        Unix timestamps (its reference's format); balance and status change with no date to show it."""
        rng = self._rng(rec)
        amount = rng.choice((2500, 5000, 10000))
        spent = min(amount, rng.choice((0, 0, 1000, 2500)) + 500 * rec.version)
        buyer, friend = self._person(rng), self._person(rng)
        return {"id": rec.id, "code": f"GC-{rec.seed % 10**8:08d}", "amount": money(amount),
                "balance": money(amount - spent), "status": "active" if spent < amount else "expired",
                "customer_id": rng.choice((0, rng.randint(1, 5000))), "order_id": rng.randint(1, 5000),
                "to_name": f"{friend['first_name']} {friend['last_name']}", "to_email": friend["email"],
                "from_name": f"{buyer['first_name']} {buyer['last_name']}", "from_email": buyer["email"],
                "template": "celebration.html", "message": "Enjoy!", "currency_code": "USD",
                "purchase_date": str(int(rec.created.timestamp())),
                "expiry_date": str(int((rec.created + dt.timedelta(days=365)).timestamp()))}

    def currency(self, rec: Record) -> dict:
        """Serialize a currency as GET /v2/currencies does; the first is the store's default."""
        code, name, country, rate = (("USD", "US Dollar", "US", "1.0000000000"), ("EUR", "Euro", "DE", "0.9200000000"),
                                     ("GBP", "British Pound", "GB", "0.7900000000"),
                                     ("CAD", "Canadian Dollar", "CA", "1.3600000000"))[(rec.id - 1) % 4]
        return {"id": rec.id, "is_default": rec.id == 1, "currency_code": code, "currency_exchange_rate": rate,
                "auto_update": rec.id != 1, "enabled": True, "is_transactional": rec.id <= 2, "name": name,
                "country_iso2": country, "default_for_country_codes": [country], "token": "$",
                "token_location": "left", "decimal_token": ".", "thousands_token": ",", "decimal_places": 2,
                "last_updated": rfc2822(rec.modified)}

    @staticmethod
    def order_statuses() -> list[dict]:
        """GET /v2/order_statuses: the fifteen statuses, ids 0 to 14."""
        return [{"id": sid, "name": name, "system_label": name, "custom_label": name,
                 "system_description": f"The order is {name.lower()}."} for sid, name in ORDER_STATUSES.items()]

    def store_info(self, store_hash: str, base_url: str) -> dict:
        """The store's settings (GET /v2/store): one object; its id is the store hash, as text."""
        rng = random.Random(_mix(self.seed, 99))
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} Shop"
        return {
            "id": store_hash, "account_uuid": f"{_mix(self.seed, 98):032x}"[:32], "domain": "shop.example.com",
            "secure_url": "https://shop.example.com",
            "control_panel_base_url": f"https://store-{store_hash}.mybigcommerce.com",
            "status": "live", "name": name, "first_name": "Jane", "last_name": "Doe",
            "address": "1 Main Street, Austin, Texas 78751", "country": "United States", "country_code": "US",
            "phone": "555-000-0000", "admin_email": "owner@example.com", "order_email": "orders@example.com",
            "favicon_url": "https://cdn.example.com/favicon.ico",
            "timezone": {"name": "America/Chicago", "raw_offset": -21600, "dst_offset": -18000, "dst_correction": True,
                         "date_format": {"display": "M jS Y", "export": "M jS Y", "extended_display": "M jS Y @ g:i A"}},
            "language": "en", "currency": "USD", "currency_symbol": "$", "decimal_separator": ".",
            "thousands_separator": ",", "decimal_places": 2, "currency_symbol_location": "left",
            "weight_units": "LBS", "dimension_units": "Inches", "dimension_decimal_places": 2,
            "dimension_decimal_token": ".", "dimension_thousands_token": ",", "plan_name": "Plus",
            "plan_level": "Plus", "plan_is_trial": False, "industry": "Home & Garden", "logo": [],
            "is_price_entered_with_tax": False, "store_id": 1000000 + self.seed, "default_site_id": 1000,
            "default_channel_id": 1, "active_comparison_modules": [],
            "features": {"stencil_enabled": True, "sitewidehttps_enabled": True, "facebook_catalog_id": "",
                         "checkout_type": "optimized", "wishlists_enabled": True,
                         "graphql_storefront_api_enabled": True, "shopper_consent_tracking_enabled": False,
                         "multi_storefront_enabled": True}}

    def brand(self, rec: Record) -> dict:
        """Serialize a brand as GET /v3/catalog/brands does (no dates: the API has none)."""
        rng = self._rng(rec)
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(LAST_NAMES)} {rec.id}"
        slug = name.lower().replace(" ", "-")
        return {"id": rec.id, "name": name, "page_title": name if rec.version == 0 else f"{name} (edited)",
                "meta_keywords": [slug], "meta_description": "", "search_keywords": slug.replace("-", ","),
                "image_url": rng.choice(("", f"https://cdn.example.com/brands/{slug}.png")),
                "custom_url": {"url": f"/brands/{slug}/", "is_customized": False}}

    def customer_group(self, rec: Record) -> dict:
        """Serialize a customer group as GET /v2/customer_groups does (dates as its reference shows them)."""
        rng = self._rng(rec)
        return {"id": rec.id, "name": f"{rng.choice(('Wholesale', 'VIP', 'Staff', 'Retail'))} {rec.id}",
                "is_default": rec.id == 1, "category_access": {"type": "all"},
                "discount_rules": [{"type": "all", "method": "percent", "amount": f"{rng.randint(1, 30)}.0000"}],
                "date_created": rec.created.strftime("%Y-%m-%d %H:%M:%S"),
                "date_modified": rec.modified.strftime("%Y-%m-%d %H:%M:%S"), "is_group_for_guests": False}

    def channel(self, rec: Record) -> dict:
        """Serialize a channel as GET /v3/channels does; channel 1 is always the storefront."""
        rng = self._rng(rec)
        first = rec.id == 1
        kind, platform = ("storefront", "bigcommerce") if first else rng.choice(
            (("marketplace", "amazon"), ("marketplace", "ebay"), ("pos", "square"), ("storefront", "wordpress")))
        return {"id": rec.id, "external_id": "" if first else f"ext-{rec.seed % 100000}",
                "is_listable_from_ui": True, "is_enabled": first or rng.random() < 0.7, "is_visible": True,
                "status": "active" if first else CHANNEL_STATUSES[rec.seed % len(CHANNEL_STATUSES)],
                "name": "Default storefront" if first else f"{platform.title()} {rec.id}", "type": kind,
                "platform": platform, "date_created": iso_z(rec.created), "date_modified": iso_z(rec.modified),
                "icon_url": f"https://cdn.example.com/channels/{platform}.svg"}

    @staticmethod
    def _rng(rec: Record, salt: int = 0) -> random.Random:
        """A generator for the record's details, separate from the one that drew its attributes."""
        return random.Random(rec.seed ^ (0x5BD1E995 + salt))

    def order_lines(self, rec: Record) -> list[dict]:
        """The order's products sub-resource (v2 format), derived from the order's seed and edits.

        Most orders have 1-4 lines, one in fifty has 60-150; lines are physical (shipped to one of
        the order's addresses, or picked up), digital or gift certificates. An edit changes the
        first line's quantity, as a merchant editing an order would; on half the orders it also
        removes the last line (never the only one), which can empty a shipping consignment.
        """
        rng = self._rng(rec, 1)
        count = rng.randint(60, 150) if (rec.seed >> 40) % 50 == 0 else rng.randint(1, 4)
        addresses, pickup = self._address_ids(rec), self._pickup_id(rec)
        lines = []
        for n in range(count):
            roll = rng.random()
            kind = "digital" if roll < 0.08 else "giftcertificate" if roll < 0.11 else "physical"
            qty = rng.randint(1, 5) + (rec.version % 3 if n == 0 else 0)
            address = addresses[n % len(addresses)] if kind == "physical" else 0
            at_pickup = pickup if kind == "physical" and pickup and n % 2 else 0
            lines.append(self._line(rec, n, rng, kind, qty, 0 if at_pickup else address, at_pickup))
        return lines[:count - min(rec.version, count - 1)] if self._edits_remove(rec) else lines

    @staticmethod
    def _edits_remove(rec: Record) -> bool:
        """Whether this order's edits remove things: its last line each time, and its coupon."""
        return _mix(rec.seed, 5) % 2 == 0

    def _line(self, rec: Record, n: int, rng: random.Random, kind: str, qty: int, address: int,
              pickup: int) -> dict:
        """One line item in v2 form (money as 4-decimal strings)."""
        price = rng.randint(199, 19999)
        product_id = rng.randint(1, 500)
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
        return {
            "id": rec.id * 1000 + n, "order_id": rec.id, "product_id": product_id, "variant_id": product_id * 3,
            "order_address_id": address, "order_pickup_method_id": pickup, "name": name, "name_customer": name,
            "name_merchant": name, "sku": f"SKU-{product_id:05d}", "upc": "", "type": kind,
            "base_price": money(price), "price_ex_tax": money(price), "price_inc_tax": money(price),
            "price_tax": money(0), "base_total": money(price * qty), "total_ex_tax": money(price * qty),
            "total_inc_tax": money(price * qty), "total_tax": money(0), "quantity": qty,
            "base_cost_price": money(price // 2), "cost_price_inc_tax": money(price // 2),
            "cost_price_ex_tax": money(price // 2), "cost_price_tax": money(0), "weight": "1.0000",
            "width": "0.0000", "height": "0.0000", "depth": "0.0000", "is_refunded": False,
            "quantity_refunded": 0, "refund_amount": money(0), "return_id": 0, "wrapping_id": 0,
            "wrapping_name": None, "base_wrapping_cost": money(0), "wrapping_cost_ex_tax": money(0),
            "wrapping_cost_inc_tax": money(0), "wrapping_cost_tax": money(0), "wrapping_message": "",
            "quantity_shipped": 0, "event_name": None, "event_date": None, "fixed_shipping_cost": money(0),
            "ebay_item_id": "", "ebay_transaction_id": "", "option_set_id": None,
            "parent_order_product_id": None, "is_bundled_product": False, "bin_picking_number": "",
            "external_id": None, "brand": "", "gift_certificate_id": rec.id * 1000 + n if kind == "giftcertificate"
            else None, "applied_discounts": [], "product_options": [], "configurable_fields": [],
            "discounted_total_inc_tax": money(price * qty),
        }

    @staticmethod
    def _address_ids(rec: Record) -> list[int]:
        """The ids of the order's shipping addresses (1 to 3, unique across the store)."""
        return [rec.id * 10 + k for k in range(1 + (rec.seed >> 20) % 3)]

    @staticmethod
    def _pickup_id(rec: Record) -> int:
        """The id of the order's pickup consignment, for one order in twenty (else 0)."""
        return rec.id * 10 + 9 if (rec.seed >> 50) % 20 == 0 else 0

    def _person(self, rng: random.Random) -> dict:
        """A name and postal address in v2 field names."""
        city, state, zipcode, country, iso2 = rng.choice(PLACES)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        return {"first_name": first, "last_name": last, "company": rng.choice(("", "", "Acme Corp")),
                "street_1": f"{rng.randint(1, 999)} {rng.choice(STREETS)}", "street_2": "", "city": city,
                "state": state, "zip": zipcode, "country": country, "country_iso2": iso2,
                "phone": f"555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
                "email": f"{first.lower()}.{rng.randint(1, 99999)}@example.com"}

    def order_shipping_addresses(self, rec: Record, lines: Optional[list] = None) -> list[dict]:
        """The order's shipping_addresses sub-resource (v2 format): each address that has lines."""
        lines = self.order_lines(rec) if lines is None else lines
        shipped = rec.attrs[1] in (2, 10)
        found = []
        for k, address_id in enumerate(self._address_ids(rec)):
            items = sum(line["quantity"] for line in lines if line["order_address_id"] == address_id)
            if not items:
                continue
            found.append(dict(self._person(self._rng(rec, 20 + k)), id=address_id, order_id=rec.id,
                              items_total=items, items_shipped=items if shipped else 0,
                              shipping_method="Flat Rate", base_cost=money(500), cost_ex_tax=money(500),
                              cost_inc_tax=money(500), cost_tax=money(0), cost_tax_class_id=2,
                              base_handling_cost=money(0), handling_cost_ex_tax=money(0),
                              handling_cost_inc_tax=money(0), handling_cost_tax=money(0),
                              handling_cost_tax_class_id=2, shipping_zone_id=1,
                              shipping_zone_name="United States", form_fields=[]))
        return found

    def consignments(self, rec: Record, link: str, full: bool, cap: Optional[int] = None,
                     warn: bool = False) -> dict:
        """The order's consignments object (include=consignments[.line_items], consignment_structure=object).

        Shipping consignments carry money as JSON numbers, as the reference's example does; `cap`
        cuts each consignment's embedded lines (an undocumented cap the tap must not trust).
        """
        lines = self.order_lines(rec)

        def embed(group):
            shown = group if full else [{"url": f"{link}/products/{line['id']}",
                                         "resource": f"/orders/{rec.id}/products/{line['id']}"} for line in group]
            return shown if cap is None else shown[:cap]

        def consignment(fields, group):
            body = dict(fields, line_items=embed(group))
            if warn and cap is not None and len(group) > cap:
                body["__warning__"] = f"Only the first {cap} line items are shown."
            return body

        shipping = [consignment(dict(address, **{key: float(address[key]) for key in _SHIPPING_MONEY}),
                                [line for line in lines if line["order_address_id"] == address["id"]])
                    for address in self.order_shipping_addresses(rec, lines)]
        for address in shipping:
            address.pop("order_id")
            address["shipping_quotes"] = {"url": f"{link}/shipping_addresses/{address['id']}/shipping_quotes",
                                          "resource": f"/orders/{rec.id}/shipping_addresses/{address['id']}/shipping_quotes"}
        picked = [line for line in lines if line["order_pickup_method_id"]]
        pickups = [consignment({"id": self._pickup_id(rec), "pickup_method_id": 1,
                                "pickup_method_display_name": "Pick up in store",
                                "collection_instructions": "Bring your order number",
                                "collection_time_description": "Ready in 2 hours",
                                "location": {"id": 1, "name": "Main Street store", "code": "MAIN",
                                             "address_line_1": "1 Main Street", "city": "Austin",
                                             "state": "Texas", "postal_code": "78751", "country_alpha2": "US",
                                             "email": "store@example.com", "phone": "555-000-0000"}}, picked)
                   ] if picked else []
        email = self._person(self._rng(rec, 30))["email"]
        digital = [line for line in lines if line["type"] == "digital"]
        downloads = [consignment({"recipient_email": email}, digital)] if digital else []
        gifts = [consignment({"recipient_email": f"friend{line['id']}@example.com"}, [line])
                 for line in lines if line["type"] == "giftcertificate"]
        return {"pickups": pickups, "shipping": shipping, "downloads": downloads,
                "email": {"gift_certificates": gifts}}

    def fees(self, rec: Record) -> list[dict]:
        """The order's fees (include=fees): most orders none, some one or two."""
        rng = self._rng(rec, 5)
        if rng.random() < 0.85:
            return []
        return [{"id": rec.id * 10 + k, "type": "custom_fee", "display_name_customer": "Handling fee",
                 "display_name_merchant": f"Handling fee {k + 1}", "source": "manual", "base_cost": 2.5,
                 "cost_ex_tax": 2.5, "cost_inc_tax": 2.75, "cost_tax": 0.25, "tax_class_id": 0}
                for k in range(rng.randint(1, 2))]

    def order_coupons(self, rec: Record) -> list[dict]:
        """The order's coupons sub-resource (v2 format); one order in ten has one, until an edit
        that removes things takes it off."""
        rng = self._rng(rec, 3)
        if rng.random() < 0.9 or (rec.version and self._edits_remove(rec)):
            return []
        coupon_id = rng.randint(1, 40)
        return [{"id": rec.id, "coupon_id": coupon_id, "order_id": rec.id, "code": f"SAVE{coupon_id}",
                 "amount": "5.0000", "type": 2, "discount": 5.0}]

    def order(self, rec: Record, base_url: str, store_hash: str, include: set = frozenset()) -> dict:
        """Serialize an order as GET /v2/orders does; `include` holds the include= values asked for,
        plus "structure=object" for consignment_structure=object and "cap=N" / "warn" for the
        sandbox's embedded-lines cap."""
        rng = self._rng(rec)
        customer_id, status_id = rec.attrs
        lines = self.order_lines(rec)
        subtotal = sum(round(float(line["base_total"]) * 100) for line in lines)
        tax = subtotal * rng.choice((0, 0, 5, 8, 10)) // 100
        coupon = 500 if self.order_coupons(rec) else 0
        addresses = len(self.order_shipping_addresses(rec, lines))
        shipping = 500 * addresses
        total = subtotal + tax + shipping - coupon
        refunded = sum(round(refund["total_amount"] * 100) for refund in self.refunds_of.get(rec.id, ()))
        shipped = status_id in (2, 3, 10)
        items = sum(line["quantity"] for line in lines)
        bill = self._person(rng)
        bill["form_fields"] = []
        link = f"{base_url}/stores/{store_hash}/v2/orders/{rec.id}"
        return {
            "id": rec.id, "customer_id": customer_id, "date_created": rfc2822(rec.created),
            "date_modified": rfc2822(rec.modified),
            "date_shipped": rfc2822(rec.modified) if shipped else "",
            "status_id": status_id, "status": ORDER_STATUSES[status_id],
            "custom_status": ORDER_STATUSES[status_id], "cart_id": f"{rec.seed:016x}"[:16],
            "subtotal_ex_tax": money(subtotal), "subtotal_inc_tax": money(subtotal + tax),
            "subtotal_tax": money(tax), "base_shipping_cost": money(shipping),
            "shipping_cost_ex_tax": money(shipping), "shipping_cost_inc_tax": money(shipping),
            "shipping_cost_tax": money(0), "shipping_cost_tax_class_id": 2, "base_handling_cost": money(0),
            "handling_cost_ex_tax": money(0), "handling_cost_inc_tax": money(0), "handling_cost_tax": money(0),
            "handling_cost_tax_class_id": 2, "base_wrapping_cost": money(0), "wrapping_cost_ex_tax": money(0),
            "wrapping_cost_inc_tax": money(0), "wrapping_cost_tax": money(0), "wrapping_cost_tax_class_id": 3,
            "total_ex_tax": money(total - tax), "total_inc_tax": money(total), "total_tax": money(tax),
            "is_tax_inclusive_pricing": False, "items_total": items, "items_shipped": items if shipped else 0,
            "payment_method": rng.choice(PAYMENT_METHODS),
            "payment_provider_id": rng.choice(("", None, f"ch_{rec.seed % 10**10}")),
            "payment_status": rng.choice(PAYMENT_STATUSES), "refunded_amount": money(refunded),
            "order_is_digital": not any(line["type"] == "physical" for line in lines), "store_credit_amount": money(0), "gift_certificate_amount": money(0),
            "ip_address": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            "ip_address_v6": "", "geoip_country": bill["country"], "geoip_country_iso2": bill["country_iso2"],
            "currency_id": 1, "currency_code": "USD", "currency_exchange_rate": "1.0000000000",
            "default_currency_id": 1, "default_currency_code": "USD",
            "store_default_currency_code": "USD", "store_default_to_transactional_exchange_rate": "1.0000000000",
            "staff_notes": f"Edited {rec.version} time(s)" if rec.version else "",
            "customer_message": "", "discount_amount": money(coupon), "coupon_discount": money(coupon),
            "shipping_address_count": addresses, "is_deleted": rec.id in self.archived, "ebay_order_id": "0",
            "is_email_opt_in": rng.random() < 0.3, "credit_card_type": None,
            "order_source": rng.choice(("www", "www", "manual", "iphone", "external")),
            "channel_id": 1 + _mix(rec.seed, 3) % self.channel_count,
            "external_source": None, "external_id": None, "external_merchant_id": None,
            "external_order_id": "", "tax_provider_id": "BasicTaxProvider", "customer_locale": "en",
            "billing_address": bill,
            "products": {"url": f"{link}/products", "resource": f"/orders/{rec.id}/products"},
            "shipping_addresses": {"url": f"{link}/shippingaddresses",
                                   "resource": f"/orders/{rec.id}/shippingaddresses"},
            "coupons": {"url": f"{link}/coupons", "resource": f"/orders/{rec.id}/coupons"},
            **self._order_includes(rec, link, include),
        }

    def _order_includes(self, rec: Record, link: str, include: set) -> dict:
        """consignments and fees: embedded when asked for, else links like the other sub-resources."""
        extras = {"consignments": {"url": f"{link}/consignments", "resource": f"/orders/{rec.id}/consignments"},
                  "fees": {"url": f"{link}/fees", "resource": f"/orders/{rec.id}/fees"}}
        if "fees" in include:
            extras["fees"] = self.fees(rec)
        full = "consignments.line_items" in include
        if full or "consignments" in include:
            cap = next((int(token[4:]) for token in include if token.startswith("cap=")), None)
            found = self.consignments(rec, link, full, cap, "warn" in include)
            # Without consignment_structure=object: the legacy array shape (undocumented today), one
            # object per kind of consignment.
            extras["consignments"] = found if "structure=object" in include else [
                {key: value} for key, value in found.items() if value]
        return extras

    def coupon(self, rec: Record) -> dict:
        """Serialize a coupon as GET /v2/coupons does (no date_modified: the API has none)."""
        rng = self._rng(rec)
        kind = rng.choice(COUPON_TYPES)
        promo = kind == "promotion"
        expires = ""
        if rng.random() < 0.4:
            expires = rfc2822((rec.created + dt.timedelta(days=rng.randint(7, 365))).replace(hour=0, minute=0, second=0))
        restricted = rng.choice(({}, {}, {"countries": "AU"}, {"countries": ["US", "CA"]},
                                 {"zips": {"AU": ["2000", "20??"]}}))
        return {
            "id": rec.id, "name": f"Coupon {rec.id}: {rng.randint(5, 50)} off",
            "type": kind, "amount": money(0 if promo else rng.randint(1, 50) * 100),
            "min_purchase": money(0 if promo else rng.choice((0, 0, 2000, 5000))), "expires": expires,
            "enabled": rng.random() < 0.8, "code": rec.attrs[0],
            "applies_to": {"entity": rng.choice(("products", "categories")),
                           "ids": sorted(rng.sample(range(0, 60), rng.randint(1, 3)))},
            "num_uses": rng.randint(0, 200) + rec.version, "max_uses": rng.choice((0, 100, 500)),
            "max_uses_per_customer": rng.choice((0, 1)),
            "restricted_to": [] if promo else restricted,
            "shipping_methods": None if promo else rng.choice(([], [], ["shipping_flatrate"])),
            "date_created": rfc2822(rec.created),
        }

    def customer(self, rec: Record, include: set) -> dict:
        """Serialize a customer as GET /v3/customers does; include= adds the optional arrays."""
        rng = self._rng(rec)
        first, last = rec.attrs
        addresses = []
        for n in range(rng.randint(0, 3)):
            city, state, zipcode, country, iso2 = rng.choice(PLACES)
            addresses.append({
                "id": rec.id * 10 + n, "customer_id": rec.id, "first_name": first, "last_name": last,
                "company": "", "address1": f"{rng.randint(1, 999)} {rng.choice(STREETS)}", "address2": "",
                "city": city, "state_or_province": state, "postal_code": zipcode, "country_code": iso2,
                "country": country, "phone": "", "address_type": rng.choice(("residential", "commercial")),
                "form_fields": []})
        attributes = [{"id": rec.id * 10 + n, "attribute_id": n + 1,
                       "attribute_value": rng.choice(("gold", "silver", "42", "yes")), "customer_id": rec.id,
                       "date_created": iso_z(rec.created), "date_modified": iso_z(rec.modified)}
                      for n in range(rng.randint(0, 2))]
        body = {
            "id": rec.id, "email": f"{first.lower()}.{last.lower().replace(chr(39), '')}{rec.id}@example.com",
            "first_name": first, "last_name": last, "company": rng.choice(("", "", "Acme Corp", "Globex")),
            "phone": rng.choice(("", f"555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}")),
            "registration_ip_address": f"10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            "notes": f"Edited {rec.version} time(s)" if rec.version else "",
            "tax_exempt_category": "", "customer_group_id": rng.choice((0, 0, 1, 2)) % (self.group_count + 1),
            "date_created": iso_z(rec.created), "date_modified": iso_z(rec.modified),
            "address_count": len(addresses), "attribute_count": len(attributes),
            "authentication": {"force_password_reset": False},
            "accepts_product_review_abandoned_cart_emails": rng.random() < 0.5,
            "origin_channel_id": 1, "channel_ids": rng.choice((None, [1])),
        }
        if "addresses" in include:
            body["addresses"] = addresses
        if "attributes" in include:
            body["attributes"] = attributes
        if "formfields" in include:
            body["form_fields"] = [{"name": "Newsletter", "value": rng.choice(("yes", "no")), "customer_id": rec.id}]
        if "storecredit" in include:
            body["store_credit_amounts"] = [{"amount": rng.choice((0, 0, 5, 43.15))}]
        if "shopper_profile_id" in include:
            body["shopper_profile_id"] = f"{rec.seed:032x}"[:32]
        if "segment_ids" in include:
            body["segment_ids"] = []
        return body

    def product(self, rec: Record, include: set) -> dict:
        """Serialize a product as GET /v3/catalog/products does; include= adds the optional arrays."""
        rng = self._rng(rec)
        name, sku, price, inventory, visible, sold = rec.attrs
        slug = name.lower().replace(" ", "-")
        body = {
            "id": rec.id, "name": name, "type": rng.choice(("physical", "physical", "digital")), "sku": sku,
            "description": f"<p>{name}. Lorem ipsum dolor sit amet.</p>",
            "weight": rng.randint(0, 20), "width": 0, "depth": 0, "height": 0, "price": price,
            "cost_price": round(price / 2, 2), "retail_price": round(price * 1.2, 2), "sale_price": 0,
            "map_price": 0, "tax_class_id": 0, "product_tax_code": "", "calculated_price": price,
            "categories": sorted(rng.sample(self._category_ids, 2)), "brand_id": rng.randint(0, 40) % (self.brand_count + 1),
            "option_set_id": None, "option_set_display": "right", "inventory_level": inventory,
            "inventory_warning_level": 0, "inventory_tracking": rng.choice(("none", "product", "variant")),
            "reviews_rating_sum": 0, "reviews_count": 0, "total_sold": sold, "fixed_cost_shipping_price": 0,
            "is_free_shipping": rng.random() < 0.2, "is_visible": visible, "is_featured": rng.random() < 0.1,
            "related_products": [-1], "warranty": "", "bin_picking_number": "", "layout_file": "product.html",
            "upc": "", "mpn": "", "gtin": "", "search_keywords": "", "availability": "available",
            "availability_description": "", "gift_wrapping_options_type": "any", "gift_wrapping_options_list": [],
            "sort_order": 0, "condition": "New", "is_condition_shown": False, "order_quantity_minimum": 0,
            "order_quantity_maximum": 0, "page_title": "", "meta_keywords": [], "meta_description": "",
            "date_created": iso_offset(rec.created), "date_modified": iso_offset(rec.modified),
            "view_count": rng.randint(0, 3000) + rec.version, "preorder_release_date": None,
            "preorder_message": "", "is_preorder_only": False, "is_price_hidden": False,
            "price_hidden_label": "", "custom_url": {"url": f"/{slug}/", "is_customized": False},
            "base_variant_id": rec.id * 10, "open_graph_type": "product", "open_graph_title": "",
            "open_graph_description": "", "open_graph_use_meta_description": True,
            "open_graph_use_product_name": True, "open_graph_use_image": True, "date_last_imported": "",
        }
        images = [{"id": rec.id * 10 + n, "product_id": rec.id, "is_thumbnail": n == 0, "sort_order": n,
                   "description": "", "image_url": f"https://cdn.example.com/{slug}-{n}.jpg",
                   "url_zoom": f"https://cdn.example.com/zoom/{slug}-{n}.jpg",
                   "url_standard": f"https://cdn.example.com/std/{slug}-{n}.jpg",
                   "url_thumbnail": f"https://cdn.example.com/thumb/{slug}-{n}.jpg",
                   "url_tiny": f"https://cdn.example.com/tiny/{slug}-{n}.jpg",
                   "date_modified": iso_offset(rec.modified)} for n in range(rng.randint(0, 3))]
        if "variants" in include:
            body["variants"] = [{
                "id": rec.id * 10 + n, "product_id": rec.id, "sku": f"{sku}-{n}", "sku_id": rec.id * 10 + n,
                "price": None if n == 0 else price, "calculated_price": price, "sale_price": None,
                "retail_price": None, "map_price": None, "cost_price": None, "weight": None,
                "calculated_weight": body["weight"], "width": None, "height": None, "depth": None,
                "is_free_shipping": False, "fixed_cost_shipping_price": None, "purchasing_disabled": False,
                "purchasing_disabled_message": "", "image_url": "", "upc": "", "mpn": "", "gtin": "",
                "inventory_level": inventory, "inventory_warning_level": 0, "bin_picking_number": "",
                "option_values": []} for n in range(rng.randint(1, 3))]
        if "images" in include:
            body["images"] = images
        if "primary_image" in include:
            body["primary_image"] = images[0] if images else None
        if "custom_fields" in include:
            body["custom_fields"] = [{"id": rec.id * 10 + n, "name": f"field_{n}", "value": "yes"}
                                     for n in range(rng.randint(0, 2))]
        if "bulk_pricing_rules" in include:
            body["bulk_pricing_rules"] = [{"id": rec.id, "quantity_min": 10, "quantity_max": 0, "type": "percent",
                                           "amount": 5}] if rng.random() < 0.3 else []
        if "videos" in include:
            body["videos"] = [{"id": rec.id, "product_id": rec.id, "title": f"{name} video", "description": "",
                               "sort_order": 0, "type": "youtube", "video_id": "dQw4w9WgXcQ", "length": "01:00"}
                              ] if rng.random() < 0.2 else []
        for key in ("options", "modifiers", "channels", "parent_relations", "reviews"):
            if key in include:
                body[key] = [1] if key == "channels" else []
        return body
