"""Read and check what the user hands the tap: the config, state and catalog files.

Everything is checked before the tap writes a byte to stdout, and every problem becomes one
InputError sentence naming the file and the key.
"""
import re
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from tap_bigcommerce.errors import InputError
from tap_bigcommerce.streams import STREAMS_BY_NAME
from tap_bigcommerce.transform import BadDate, parse_datetime
from tap_bigcommerce.version import __version__

DEFAULT_BASE_URL = "https://api.bigcommerce.com"
MAX_PAGE_SIZE = 250  # the documented maximum for every list endpoint the tap reads
REQUIRED = ("client_id", "access_token", "store_hash", "start_date")
_STORE_HASH_IN_URL = re.compile(r"/stores/([^/?#]+)")
_STORE_HASH = re.compile(r"[A-Za-z0-9_-]+\Z")


@dataclass(frozen=True)
class Config:
    """The tap's settings, checked and normalised."""

    client_id: str = field(repr=False)
    access_token: str = field(repr=False)
    store_hash: str
    start_date: datetime
    base_url: str = DEFAULT_BASE_URL
    page_size: int = MAX_PAGE_SIZE
    request_timeout: float = 300.0
    user_agent: str = f"tap-bigcommerce/{__version__}"
    max_workers: int = 16
    max_retries: int = 5
    retry_base_delay: float = 2.0

    @property
    def max_requests(self):
        """Requests in flight at most: a range's short last page is put aside and, at the end of the
        sync, fetched alongside the ranges still being read, so up to twice max_workers."""
        return 2 * self.max_workers if self.max_workers > 1 else 1

    @property
    def secrets(self):
        """The values that must never be printed."""
        return tuple(value for value in (self.access_token, self.client_id) if value)


def load_json(path, what):
    """Read a JSON file, or raise InputError naming the file and what is wrong with it."""
    try:
        with open(path, "rb") as handle:
            return orjson.loads(handle.read())
    except FileNotFoundError:
        raise InputError(f"The {what} file {path} does not exist.") from None
    except IsADirectoryError:
        raise InputError(f"The {what} file {path} is a directory, not a file.") from None
    except PermissionError:
        raise InputError(f"The {what} file {path} cannot be read (permission denied).") from None
    except orjson.JSONDecodeError as exc:
        raise InputError(f"The {what} file {path} is not valid JSON ({exc}).") from None


def store_hash_from(value):
    """Accept a bare store hash, or an API path pasted from the control panel, and return the hash."""
    text = value.strip()
    match = _STORE_HASH_IN_URL.search(text)
    if match:
        text = match.group(1)
    text = text.strip("/")
    if not _STORE_HASH.match(text):
        raise InputError(
            f"store_hash {value!r} is not a store hash; use the part between /stores/ and /v3/ "
            "of the store's API path, e.g. abc123."
        )
    return text


def _number(raw, key, kind, minimum, maximum=None):
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"Config key {key} must be a number, not {value!r}.")
    try:
        number = kind(value)
    except ValueError:
        raise InputError(f"Config key {key} must be a number, not {value!r}.") from None
    if number < minimum or (maximum is not None and number > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise InputError(f"Config key {key} must be {bounds}, not {value!r}.")
    return number


def parse_config(raw):
    """Check a config dict and return a Config."""
    if not isinstance(raw, dict):
        raise InputError("The config file must hold a JSON object.")
    missing = [key for key in REQUIRED if raw.get(key) in (None, "")]
    if missing:
        raise InputError(f"The config is missing {', '.join(missing)}.")
    for key in ("client_id", "access_token", "store_hash", "start_date", "base_url", "user_agent"):
        if key in raw and not isinstance(raw[key], str):
            raise InputError(f"Config key {key} must be a string.")
    try:
        start_date = parse_datetime(raw["start_date"])
    except BadDate:
        raise InputError(
            f"start_date {raw['start_date']!r} is not a date; use ISO 8601 (2024-01-31 or "
            "2024-01-31T00:00:00Z) or MM/DD/YYYY."
        ) from None
    options = {}
    base_url = raw.get("base_url") or DEFAULT_BASE_URL
    if not re.match(r"https?://[^/\s]+", base_url):
        raise InputError(f"base_url {base_url!r} must start with http:// or https://.")
    options["base_url"] = base_url.rstrip("/")
    if raw.get("user_agent"):
        options["user_agent"] = raw["user_agent"]
    limits = {
        "page_size": (int, 1, MAX_PAGE_SIZE),
        "request_timeout": (float, 1, None),
        "max_workers": (int, 1, 64),
        "max_retries": (int, 0, 100),
        "retry_base_delay": (float, 0, 600),
    }
    for key, (kind, low, high) in limits.items():
        if raw.get(key) not in (None, ""):
            options[key] = _number(raw, key, kind, low, high)
    return Config(
        client_id=raw["client_id"],
        access_token=raw["access_token"],
        store_hash=store_hash_from(raw["store_hash"]),
        start_date=start_date,
        **options,
    )


def parse_state(raw):
    """Check a state dict: {"bookmarks": {stream: {"date_modified": ...}}}; returns a copy."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InputError("The state file must hold a JSON object.")
    bookmarks = raw.get("bookmarks", {})
    if not isinstance(bookmarks, dict):
        raise InputError("The state's bookmarks must be a JSON object.")
    for name, bookmark in bookmarks.items():
        if not isinstance(bookmark, dict):
            raise InputError(f"The state's bookmark for {name} must be a JSON object.")
        stream = STREAMS_BY_NAME.get(name)
        if stream is None:
            continue  # a bookmark for a stream this version does not know is kept as it is
        key = stream.replication_key
        if key and key in bookmark and not _is_datetime(bookmark[key]):
            raise InputError(f"The state's {name} bookmark {key} = {bookmark[key]!r} is not a date-time.")
        if not stream.replication_key:
            for key in ("version", "last_id"):
                if key in bookmark and (not isinstance(bookmark[key], int) or isinstance(bookmark[key], bool)):
                    raise InputError(f"The state's {name} bookmark {key} must be a whole number.")
    copy = dict(raw)
    copy["bookmarks"] = {name: dict(bookmark) for name, bookmark in bookmarks.items()}
    return copy


def _is_datetime(value):
    if not isinstance(value, str):
        return False
    try:
        parse_datetime(value)
    except BadDate:
        return False
    return True


def bookmark_start(state, stream, config):
    """Where an incremental stream starts: its bookmark (inclusive), else start_date."""
    value = state.get("bookmarks", {}).get(stream.name, {}).get(stream.replication_key)
    return parse_datetime(value) if value else config.start_date



@dataclass(frozen=True)
class Selection:
    """One stream to sync: its row, the schema to emit, and the top-level fields to keep."""

    stream: object
    schema: dict
    fields: tuple


def _metadata_map(entry):
    entries = entry.get("metadata", [])
    if not isinstance(entries, list):
        raise InputError(f"The catalog entry for {entry.get('tap_stream_id')} has metadata that is not a list.")
    result = {}
    for item in entries:
        if not isinstance(item, dict) or not isinstance(item.get("breadcrumb"), list):
            raise InputError(f"The catalog entry for {entry.get('tap_stream_id')} has a malformed metadata entry.")
        result[tuple(item["breadcrumb"])] = item.get("metadata") or {}
    return result


def _is_selected(meta):
    if "selected" in meta:
        return meta["selected"] is True
    return meta.get("selected-by-default") is True


def parse_catalog(raw):
    """The selected streams of a catalog, each with its selected (and automatic) fields."""
    if not isinstance(raw, dict) or not isinstance(raw.get("streams"), list):
        raise InputError('The catalog file must hold a JSON object with a "streams" list.')
    selections = []
    for entry in raw["streams"]:
        if not isinstance(entry, dict):
            raise InputError("Every entry of the catalog's streams list must be a JSON object.")
        name = entry.get("tap_stream_id") or entry.get("stream")
        stream = STREAMS_BY_NAME.get(name)
        if stream is None:
            known = ", ".join(sorted(STREAMS_BY_NAME))
            raise InputError(f"The catalog names a stream {name!r} that this tap does not have (it has {known}).")
        schema = entry.get("schema")
        if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
            raise InputError(f"The catalog's schema for {name} must be a JSON object with properties.")
        metadata = _metadata_map(entry)
        root = metadata.get((), {})
        if not (_is_selected(root) or schema.get("selected") is True):
            continue
        automatic = {stream.key, stream.replication_key}
        fields = []
        for field_name in schema["properties"]:
            meta = metadata.get(("properties", field_name), {})
            inclusion = meta.get("inclusion")
            if field_name in automatic or inclusion == "automatic":
                fields.append(field_name)
            elif inclusion != "unsupported" and (_is_selected(meta) or not meta):
                fields.append(field_name)
        for needed in automatic - {None}:
            if needed not in schema["properties"]:
                raise InputError(f"The catalog's schema for {name} lacks the {needed} field the tap needs.")
        kept = dict(schema, properties={f: schema["properties"][f] for f in fields})
        selections.append(Selection(stream, kept, tuple(fields)))
    return selections
