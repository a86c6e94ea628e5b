"""Discovery: the Singer catalog, built from the stream rows and the bundled JSON schemas."""
import json
from importlib import resources
from pathlib import Path

from tap_bigcommerce.deletions import DELETED_AT, detects
from tap_bigcommerce.streams import BASE_SCOPES, STREAMS


def _schema_dir():
    """The schemas: installed as tap_bigcommerce.schemas, or the top-level schemas/ of a checkout."""
    try:
        return resources.files("tap_bigcommerce.schemas")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "schemas"


def load_schema(stream):
    """The JSON schema bundled for a stream; where the tap can find its deleted records, with the
    _sdc_deleted_at column they come with (detect_deletions)."""
    schema = json.loads(_schema_dir().joinpath(f"{stream.name}.json").read_text(encoding="utf-8"))
    if detects(stream):
        schema["properties"][DELETED_AT] = {"type": ["null", "string"], "format": "date-time"}
    return schema


def stream_metadata(stream, schema):
    """Standard Singer metadata for a stream, derived from its row, never typed by hand."""
    base = stream.scope in BASE_SCOPES  # a stream needing another scope is opted into
    root = {
        "table-key-properties": list(stream.key_properties),
        "forced-replication-method": stream.replication_method,
        "inclusion": "available",
        "selected": base,
        "selected-by-default": base,
    }
    if stream.replication_key:
        root["valid-replication-keys"] = [stream.replication_key]
    if stream.parent:
        root["parent-tap-stream-id"] = stream.parent
    automatic = {*stream.key_properties, stream.replication_key, DELETED_AT}
    entries = [{"breadcrumb": [], "metadata": root}]
    for field in schema["properties"]:
        entries.append(
            {
                "breadcrumb": ["properties", field],
                "metadata": {
                    "inclusion": "automatic" if field in automatic else "available",
                    "selected-by-default": True,
                },
            }
        )
    return entries


def discover():
    """The catalog: one entry per stream."""
    entries = []
    for stream in STREAMS:
        schema = load_schema(stream)
        entry = {
            "tap_stream_id": stream.name,
            "stream": stream.name,
            "key_properties": list(stream.key_properties),
            "replication_method": stream.replication_method,
            "schema": schema,
            "metadata": stream_metadata(stream, schema),
        }
        if stream.replication_key:
            entry["replication_key"] = stream.replication_key
        entries.append(entry)
    return {"streams": entries}
