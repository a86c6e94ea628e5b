"""Read and check what the user hands the tap: the config, state and catalog files.

Everything is checked before the tap writes a byte to stdout, and every problem becomes one
InputError sentence naming the file and the key.
"""
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import orjson

from tap_bigcommerce.deletions import DELETED_AT, IdSet
from tap_bigcommerce.discover import load_schema
from tap_bigcommerce.errors import InputError
from tap_bigcommerce.streams import INCREMENTAL, STREAMS_BY_NAME
from tap_bigcommerce.transform import BadDate, parse_datetime
from tap_bigcommerce.version import __version__

DEFAULT_BASE_URL = "https://api.bigcommerce.com"
MAX_PAGE_SIZE = 250  # the documented maximum for every list endpoint the tap reads
REQUIRED = ("client_id", "access_token", "store_hash", "start_date")
TEXT_SETTINGS = ("client_id", "access_token", "store_hash", "start_date", "base_url", "user_agent")
_STORE_HASH_IN_URL = re.compile(r"/stores/([^/?#]+)")
_STORE_HASH_IN_HOST = re.compile(r"store-([A-Za-z0-9]+)\.mybigcommerce\.com", re.IGNORECASE)  # the control panel
_STORE_HASH = re.compile(r"[A-Za-z0-9_-]+\Z")
_PRINTABLE = re.compile(r"[\x20-\x7e]+\Z")  # what an HTTP header value may safely hold
_HOST = re.compile(r"[A-Za-z0-9._-]+\Z|[0-9A-Fa-f:.]+\Z")  # a name, an IPv4 or an IPv6 address
LOGGER = logging.getLogger(__name__)


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
    refund_lookback_days: float = 7.0
    detect_deletions: bool = False

    @property
    def lookback(self):
        """How far before its bookmark an insert-only stream is read again (refund payments settle later)."""
        return timedelta(days=self.refund_lookback_days)

    @property
    def max_requests(self):
        """Requests in flight at most: a range's short last page is put aside and, at the end of the
        sync, fetched alongside the ranges still being read, so up to twice max_workers."""
        return 2 * self.max_workers if self.max_workers > 1 else 1

    @property
    def secrets(self):
        """The values that must never be printed. A client_id is never sent; a short one is a
        placeholder (such as "x"), and blanking it would garble every message that holds the letter."""
        client_id = self.client_id if len(self.client_id) >= 8 else ""
        return tuple(value for value in (self.access_token, client_id) if value)


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
    """Accept a bare store hash, an API path or a control-panel URL pasted whole; return the hash."""
    text = value.strip()
    match = _STORE_HASH_IN_URL.search(text) or _STORE_HASH_IN_HOST.search(text)
    if match:
        text = match.group(1)
    text = text.strip("/")
    if not _STORE_HASH.match(text):
        raise InputError(
            f"store_hash {value!r} is not a store hash; use the part between /stores/ and /v3/ "
            "of the store's API path, e.g. abc123."
        )
    return text


def base_url_from(value):
    """The API root: scheme, host and port only; a pasted API path or any other path is refused."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"base_url {value!r} must start with http:// or https://.")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or parts.netloc.endswith(":"):
        raise InputError(f"base_url {value!r} has a port that is not a number from 1 to 65535.")
    if "@" in parts.netloc:
        raise InputError("base_url holds a user name or password; the API takes only the access token.")
    if not _HOST.match(parts.hostname or ""):
        raise InputError(f"base_url {value!r} does not name a valid host.")
    path = parts.path.rstrip("/")
    if "/stores/" in path + "/":
        raise InputError(
            f"base_url {value!r} holds the store's API path; set base_url to {parts.scheme}://{parts.netloc} "
            "and put the store hash in store_hash."
        )
    if path or parts.query or parts.fragment:
        raise InputError(
            f"base_url {value!r} must be the API root alone, without a path or query, e.g. "
            f"{parts.scheme}://{parts.netloc}."
        )
    return f"{parts.scheme}://{parts.netloc}"


def _text_settings(raw):
    """The string settings with surrounding whitespace stripped (a pasted token often ends in a newline)."""
    for key in TEXT_SETTINGS:
        if key in raw and raw[key] is not None and not isinstance(raw[key], str):
            raise InputError(f"Config key {key} must be a string.")
    cleaned = dict(raw)
    for key in TEXT_SETTINGS:
        if isinstance(raw.get(key), str):
            cleaned[key] = raw[key].strip()
    token = cleaned.get("access_token") or ""
    if token and (not _PRINTABLE.match(token) or " " in token):
        # Never show the value: it is the secret.
        raise InputError("access_token holds a space, a control character or a non-ASCII character; "
                         "paste the token again exactly as BigCommerce shows it.")
    agent = cleaned.get("user_agent")
    if agent and not _PRINTABLE.match(agent):
        raise InputError(f"user_agent {agent!r} must be printable ASCII on one line.")
    return cleaned


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
    raw = _text_settings(raw)
    missing = [key for key in REQUIRED if raw.get(key) in (None, "")]
    if missing:
        raise InputError(f"The config is missing {', '.join(missing)}.")
    try:
        start_date = parse_datetime(raw["start_date"])
    except BadDate:
        raise InputError(
            f"start_date {raw['start_date']!r} is not a date; use ISO 8601 (2024-01-31 or "
            "2024-01-31T00:00:00Z) or MM/DD/YYYY."
        ) from None
    options = {"base_url": base_url_from(raw.get("base_url") or DEFAULT_BASE_URL)}
    if raw.get("user_agent"):
        options["user_agent"] = raw["user_agent"]
    limits = {
        "page_size": (int, 1, MAX_PAGE_SIZE),
        "request_timeout": (float, 1, None),
        "max_workers": (int, 1, 64),
        "max_retries": (int, 0, 100),
        "retry_base_delay": (float, 0, 600),
        "refund_lookback_days": (float, 0, 365),
    }
    for key, (kind, low, high) in limits.items():
        if raw.get(key) not in (None, ""):
            options[key] = _number(raw, key, kind, low, high)
    if raw.get("detect_deletions") not in (None, ""):
        options["detect_deletions"] = _flag(raw, "detect_deletions")
    return Config(
        client_id=raw["client_id"],
        access_token=raw["access_token"],
        store_hash=store_hash_from(raw["store_hash"]),
        start_date=start_date,
        **options,
    )


def _flag(raw, key):
    """A true/false setting (JSON true or false, or the text an environment variable carries)."""
    value = raw[key]
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise InputError(f"{key} must be true or false, not {value!r}.")


def parse_state(raw):
    """Check a state dict: {"bookmarks": {stream: {"date_modified": ...}}}; returns a copy."""
    if raw is None:
        return {}
    raw = _unwrap_state(raw)
    if not isinstance(raw, dict):
        raise InputError("The state file must hold a JSON object.")
    bookmarks = raw.get("bookmarks", {})
    if not isinstance(bookmarks, dict):
        raise InputError("The state's bookmarks must be a JSON object.")
    for name, bookmark in bookmarks.items():
        if not isinstance(bookmark, dict):
            raise InputError(f"The state's bookmark for {name} must be a JSON object.")
        stream = STREAMS_BY_NAME.get(name)
        if stream is not None:  # a bookmark for a stream this version does not know is kept as it is
            _check_bookmark(stream, bookmark)
    deletions = raw.get("deletions", {})
    if not isinstance(deletions, dict) or not all(isinstance(entry, dict) for entry in deletions.values()):
        raise InputError("The state's deletions must be a JSON object of one object per stream.")
    for name, entry in deletions.items():
        for part in ("delivered", "reading"):
            IdSet.from_state(name, entry.get(part, []))
    copy = dict(raw)
    copy["bookmarks"] = {name: dict(bookmark) for name, bookmark in bookmarks.items()}
    return copy


def _unwrap_state(raw):
    """The state inside Meltano's {"singer_state": ...} or a whole STATE message (`tail -1` of a run)."""
    while isinstance(raw, dict):
        if raw.get("type") == "STATE" and "value" in raw:
            LOGGER.info("The state file holds a whole STATE message; reading its value.")
            raw = raw["value"]
        elif "singer_state" in raw and "bookmarks" not in raw:
            LOGGER.info('The state file holds {"singer_state": ...} (Meltano\'s wrapper); reading what is inside.')
            raw = raw["singer_state"]
        else:
            break
    return raw


def _check_bookmark(stream, bookmark):
    """One known stream's bookmark: its date, its ranges, or its full-table version and last id."""
    name, key = stream.name, stream.replication_key
    if key and key in bookmark and not _is_datetime(bookmark[key]):
        raise InputError(f"The state's {name} bookmark {key} = {bookmark[key]!r} is not a date-time.")
    if key and "ranges" in bookmark:
        date_ranges(name, bookmark["ranges"])
    if not key:
        for field_name in ("version", "last_id"):
            value = bookmark.get(field_name, 0)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InputError(f"The state's {name} bookmark {field_name} must be a whole number.")


def date_ranges(name, ranges):
    """The "ranges" of a state's bookmark as datetimes, checked: in order, apart, the last open-ended."""
    problem = f"The state's {name} bookmark has ranges that are not a list of [from, to] date-time pairs in order."
    if not isinstance(ranges, list):
        raise InputError(problem)
    result, previous = [], None
    for index, pair in enumerate(ranges):
        if not isinstance(pair, list) or len(pair) != 2:
            raise InputError(problem)
        last = index == len(ranges) - 1
        try:
            lower = parse_datetime(pair[0])
            upper = None if last and pair[1] is None else parse_datetime(pair[1])
        except (BadDate, TypeError, AttributeError):
            raise InputError(problem) from None
        if (upper is not None and (last or upper < lower)) or (previous is not None and lower <= previous):
            raise InputError(problem)
        result.append((lower, upper))
        previous = upper
    return result


def _is_datetime(value):
    if not isinstance(value, str):
        return False
    try:
        parse_datetime(value)
    except BadDate:
        return False
    return True


def bookmark_start(entry, stream, config):
    """Where an incremental stream starts: its bookmark entry's date (inclusive), else start_date."""
    value = entry.get(stream.replication_key)
    return parse_datetime(value) if value else config.start_date



@dataclass(frozen=True)
class Selection:
    """One stream to sync: its row, the schema to emit, the top-level fields to keep, and whether
    the catalog asked to read an incremental stream whole (from start_date, keeping no bookmark)."""

    stream: object
    schema: dict
    fields: tuple
    full_table: bool = False


def _metadata_map(entry, name):
    entries = entry.get("metadata", [])
    if not isinstance(entries, list):
        raise InputError(f"The catalog entry for {name} has metadata that is not a list.")
    result = {}
    for item in entries:
        if not isinstance(item, dict) or not isinstance(item.get("breadcrumb"), list):
            raise InputError(f"The catalog entry for {name} has a malformed metadata entry.")
        meta = item.get("metadata") or {}
        if not isinstance(meta, dict):
            raise InputError(f"The catalog entry for {name} has a malformed metadata entry.")
        result[tuple(item["breadcrumb"])] = meta
    return result


def _is_selected(meta):
    if "selected" in meta:
        return meta["selected"] is True
    return meta.get("selected-by-default") is True


def parse_catalog(raw):
    """The selected streams of a catalog, each with its selected (and automatic) fields.

    The catalog chooses streams and fields; the types always come from the tap's own schemas
    (schemas/), so every record matches the SCHEMA message sent before it.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("streams"), list):
        raise InputError('The catalog file must hold a JSON object with a "streams" list.')
    selections, seen = [], set()
    for entry in raw["streams"]:
        if not isinstance(entry, dict):
            raise InputError("Every entry of the catalog's streams list must be a JSON object.")
        name = entry.get("tap_stream_id") or entry.get("stream")
        stream = STREAMS_BY_NAME.get(name)
        if stream is None:
            known = ", ".join(sorted(STREAMS_BY_NAME))
            raise InputError(f"The catalog names a stream {name!r} that this tap does not have (it has {known}).")
        if name in seen:
            raise InputError(f"The catalog lists the stream {name} more than once; keep one entry for it.")
        seen.add(name)
        schema = entry.get("schema")
        if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
            raise InputError(f"The catalog's schema for {name} must be a JSON object with properties.")
        metadata = _metadata_map(entry, name)
        root = metadata.get((), {})
        if _is_selected(root) or schema.get("selected") is True:
            selections.append(_selection(stream, schema, metadata, load_schema(stream)))
    return selections


def _selection(stream, schema, metadata, own):
    """One selected stream: the fields the catalog keeps, typed by the tap's own schema."""
    automatic = {*stream.key_properties, stream.replication_key} - {None}
    for needed in automatic:
        if needed not in schema["properties"]:
            raise InputError(f"The catalog's schema for {stream.name} lacks the {needed} field the tap needs.")
    unknown = sorted(set(schema["properties"]) - set(own["properties"]))
    if unknown:
        LOGGER.warning("%s: the catalog lists fields this tap does not have, left out: %s",
                       stream.name, ", ".join(unknown))
    field_meta = {crumb[1]: meta for crumb, meta in metadata.items() if len(crumb) == 2 and crumb[0] == "properties"}
    nested = [".".join(crumb[1::2]) for crumb, meta in metadata.items() if len(crumb) > 2 and meta.get("selected") is False]
    if nested:
        LOGGER.warning("%s: only top-level fields can be deselected; kept whole: %s", stream.name, ", ".join(nested))
    every = not any("selected" in meta for meta in field_meta.values())
    if every and any(meta and not _is_selected(meta) for meta in field_meta.values()):
        LOGGER.info("%s: the stream is selected and none of its fields says whether it is, so every field is synced",
                    stream.name)
    fields = []
    for field_name in own["properties"]:
        meta = field_meta.get(field_name, {})
        listed = field_name in schema["properties"]
        # _sdc_deleted_at too: a deletion record carries it whatever an older catalog selects.
        if field_name in automatic or field_name == DELETED_AT or meta.get("inclusion") == "automatic":
            fields.append(field_name)
        elif meta.get("inclusion") != "unsupported" and (every or _is_selected(meta) or (listed and not meta)):
            fields.append(field_name)
    kept = dict(own, properties={f: own["properties"][f] for f in fields})
    return Selection(stream, kept, tuple(fields), _full_table_asked(stream, metadata.get((), {})))


def _full_table_asked(stream, root):
    """Whether the catalog's replication-method (Meltano's replication_method) asks to read the stream whole."""
    method = root.get("replication-method")
    if method in (None, stream.replication_method):
        return False
    if method == "FULL_TABLE" and stream.kind == INCREMENTAL:
        LOGGER.info("%s: the catalog asks for FULL_TABLE; reading it whole from start_date, keeping no bookmark",
                    stream.name)
        return True
    raise InputError(f"The catalog asks for {stream.name} to be replicated {method!r}, but it can only be read "
                     f"{stream.replication_method}{' or FULL_TABLE' if stream.kind == INCREMENTAL else ''}.")
