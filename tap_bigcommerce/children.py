"""Records that come inside other records: an order's line items and shipping consignments.

Read with include=consignments.line_items and consignment_structure=object, an order carries
{"pickups": [...], "shipping": [...], "downloads": [...], "email": {"gift_certificates": [...]}},
each consignment with its line items. BigCommerce documents no cap on those embedded lines, but
its /orders/{id}/products endpoint pages at 50, so the tap never trusts them blindly: an order's
embedded lines are whole only when every one is a full record, no consignment carries a
__warning__, and their quantities add up to the order's items_total. Otherwise the sync fetches
the order's lines one page at a time (`place` puts them back into the consignments).

Nothing here does I/O; the sync calls these on raw API records, before any transform.
"""
from tap_bigcommerce.errors import ApiError

# Where each kind of consignment sits in the object, and the name the line items stream gives it.
_GROUPS = (("pickups", "pickup"), ("shipping", "shipping"), ("downloads", "download"))
UNPLACED = "_lines_in_no_consignment"  # lines fetched whole that no consignment claims (dropped by the transform)


def consignments(order):
    """(kind, consignment) for every consignment of the order; stops on a shape it does not know."""
    found = order.get("consignments")
    if not isinstance(found, dict):
        raise ApiError(
            f"orders: order {order.get('id')} has consignments in a shape the tap does not know "
            "(expected an object of pickups, shipping, downloads and email); stopping rather than lose line items."
        )
    for key, kind in _GROUPS:
        for consignment in found.get(key) or ():
            yield kind, consignment
    for consignment in (found.get("email") or {}).get("gift_certificates") or ():
        yield "gift_certificate", consignment


def lines_whole(order):
    """Whether the order's embedded line items can be trusted to be all of them."""
    quantity = 0
    for _, consignment in consignments(order):
        if "__warning__" in consignment:
            return False
        for line in _lines(consignment):
            if not isinstance(line, dict) or not isinstance(line.get("quantity"), int):
                return False  # a link, not a line item
            quantity += line["quantity"]
    return quantity == order.get("items_total")


def place(order, lines):
    """Put an order's whole list of line items into its consignments, in place.

    A line goes where it was embedded, else to the consignment its address, pickup method or type
    names; one that none claims is kept under UNPLACED, so the line items stream still has it.
    """
    home = {}
    for kind, consignment in consignments(order):
        for line in _lines(consignment):
            if isinstance(line, dict) and "id" in line:
                home[line["id"]] = consignment
        consignment["line_items"] = []
        consignment.pop("__warning__", None)
    unplaced = []
    groups = list(consignments(order))
    for line in lines:
        consignment = home.get(line.get("id")) or _claimant(groups, line)
        (consignment["line_items"] if consignment is not None else unplaced).append(line)
    if unplaced:
        order[UNPLACED] = unplaced
    return len(unplaced)


def _claimant(groups, line):
    """The consignment a line not embedded belongs to, by its address, pickup method or type."""
    for kind, consignment in groups:
        if kind == "shipping" and line.get("order_address_id") and consignment.get("id") == line["order_address_id"]:
            return consignment
        if kind == "pickup" and line.get("order_pickup_method_id") and \
                line["order_pickup_method_id"] in (consignment.get("id"), consignment.get("pickup_method_id")):
            return consignment
    wanted = {"digital": "download", "giftcertificate": "gift_certificate"}.get(line.get("type"))
    matches = [consignment for kind, consignment in groups if kind == wanted]
    return matches[0] if len(matches) == 1 else None


def _lines(consignment):
    lines = consignment.get("line_items") or []
    return lines if isinstance(lines, list) else [lines]  # the spec's examples show one object, its schema a list


def line_items(order):
    """order_line_items: one record per line, with the consignment it came in and the order's date."""
    records = []
    for kind, consignment in consignments(order):
        for line in _lines(consignment):
            records.append(dict(line, order_id=order.get("id"), consignment_type=kind,
                                consignment_id=consignment.get("id"), date_modified=order.get("date_modified")))
    for line in order.get(UNPLACED, ()):
        records.append(dict(line, order_id=order.get("id"), consignment_type=None, consignment_id=None,
                            date_modified=order.get("date_modified")))
    return records


def shipping_consignments(order):
    """order_shipping_addresses: one record per shipping consignment, without its line items."""
    return [dict({k: v for k, v in consignment.items() if k != "line_items"},
                 order_id=order.get("id"), date_modified=order.get("date_modified"))
            for kind, consignment in consignments(order) if kind == "shipping"]


TAKE = {"line_items": line_items, "shipping_consignments": shipping_consignments}
