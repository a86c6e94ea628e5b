"""Dates and records: parse BigCommerce's date formats once, and turn API records into Singer records.

A stream's transform is compiled once from its schema and the selected fields, so the per-record
work is a dict comprehension plus a date conversion for the few fields that hold date-times.
"""
import re
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from tap_bigcommerce.errors import TapError

_MONTHS = {
    name: f"{number:02d}"
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
# v2 writes every date as RFC 2822 in UTC ("Wed, 05 Dec 2018 20:16:55 +0000"); this pattern is
# the fast path, and anything else falls back to the standard library's full parser.
_RFC2822_UTC = re.compile(r"[A-Z][a-z]{2}, (\d\d) ([A-Z][a-z]{2}) (\d{4}) (\d\d:\d\d:\d\d) \+0000\Z")
_MM_DD_YYYY = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})\Z")


class BadDate(TapError):
    """A string that should hold a date-time does not."""


def parse_datetime(text):
    """Parse an ISO 8601, RFC 2822 or MM/DD/YYYY string into an aware UTC datetime."""
    text = text.strip()
    match = _RFC2822_UTC.match(text)
    if match and match.group(2) in _MONTHS:
        day, month, year, clock = match.groups()
        return datetime.fromisoformat(f"{year}-{_MONTHS[month]}-{day}T{clock}+00:00")
    match = _MM_DD_YYYY.match(text)
    if match:
        month, day, year = (int(part) for part in match.groups())
        try:
            return datetime(year, month, day, tzinfo=timezone.utc)
        except ValueError:
            raise BadDate(f"'{text}' is not a date") from None
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            raise BadDate(f"'{text}' is not a date") from None
        if parsed is None:
            raise BadDate(f"'{text}' is not a date")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def format_datetime(moment):
    """Format an aware datetime as RFC 3339 in UTC, e.g. 2018-12-05T20:16:55Z."""
    moment = moment.astimezone(timezone.utc)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def to_rfc3339(value):
    """Convert one API date value to RFC 3339 UTC; "" (v2's "no date") becomes None."""
    if not isinstance(value, str):
        raise BadDate(f"{value!r} is not a date")
    if value == "":
        return None
    # Fast paths for the two shapes BigCommerce sends for almost every record.
    if len(value) == 25 and value.endswith("+00:00") and value[10] == "T":
        return value[:19] + "Z"
    if len(value) == 20 and value[-1] == "Z" and value[10] == "T":
        return value
    match = _RFC2822_UTC.match(value)
    if match and match.group(2) in _MONTHS:
        day, month, year, clock = match.groups()
        return f"{year}-{_MONTHS[month]}-{day}T{clock}Z"
    return format_datetime(parse_datetime(value))


def _date_field_converter(value):
    """Convert a date-time field, leaving None alone."""
    return None if value is None else to_rfc3339(value)


def _types(schema):
    kind = schema.get("type", [])
    return {kind} if isinstance(kind, str) else set(kind)


def _converter(schema):
    """A function that fixes the date-times inside one value of this schema (in place), or None if none can occur."""
    if schema.get("format") == "date-time":
        return _date_field_converter
    types = _types(schema)
    if "object" in types and schema.get("properties"):
        fields = [
            (name, convert)
            for name, convert in ((n, _converter(s)) for n, s in schema["properties"].items())
            if convert is not None
        ]
        if not fields:
            return None

        def convert_object(value):
            if not isinstance(value, dict):
                return value
            for name, convert in fields:
                if name in value:
                    value[name] = convert(value[name])
            return value

        return convert_object
    if "array" in types and isinstance(schema.get("items"), dict):
        convert_item = _converter(schema["items"])
        if convert_item is None:
            return None

        def convert_array(value):
            if not isinstance(value, list):
                return value
            value[:] = [convert_item(item) for item in value]
            return value

        return convert_array
    return None


def _as_text(value):
    """A number the API sometimes sends for a string field, as a string."""
    return value if value is None or isinstance(value, str) else str(value)


def compile_transform(stream, schema, fields):
    """Build the function that turns an API record into a Singer record, in place.

    Fields that are not selected (or not in the schema) are dropped; fields the API leaves out
    stay out; date-time fields are converted to RFC 3339 UTC at any depth; the stream's
    text_fields become strings; everything else (money strings included) passes through
    untouched. The record is changed in place: copying it cost more than everything else.
    """
    properties = schema.get("properties", {})

    def converter(name):
        return _as_text if name in stream.text_fields else _converter(properties.get(name, {}))

    wanted = frozenset(fields)
    converted = tuple((name, convert) for name, convert in ((n, converter(n)) for n in fields) if convert)
    stream_name = stream.name

    def transform(record):
        for name in record.keys() - wanted:
            del record[name]
        for name, convert in converted:
            if name in record:
                try:
                    record[name] = convert(record[name])
                except BadDate as exc:
                    raise BadDate(
                        f"{stream_name} record {record.get('id')} has {name} = {record[name]!r}, "
                        f"which is not a date the tap understands ({exc})"
                    ) from None
        return record

    return transform
