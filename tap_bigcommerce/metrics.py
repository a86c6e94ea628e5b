"""Singer metrics (record counts and request timings), logged the way singer-python logs them.

singer-python is imported on first use, not at start-up: with backoff and asyncio, which it
imports, it takes about 0.1 s, and the sync imports it while its first requests are out.
"""
import logging
import threading

LOGGER = logging.getLogger("tap_bigcommerce.metrics")
_LOAD_LOCK = threading.Lock()
_LOADED = None  # singer.metrics, once imported


def load():
    """Import singer-python's metrics module (the first call pays for it; others wait for it).

    Importing singer-python replaces the root logger's handlers with its own: the tap's (which
    blanks secrets out of every line) are put back.
    """
    global _LOADED
    if _LOADED is None:
        with _LOAD_LOCK:
            if _LOADED is None:
                root = logging.getLogger()
                handlers, level = list(root.handlers), root.level
                import singer.metrics

                root.handlers[:] = handlers
                root.setLevel(level)
                _LOADED = singer.metrics
    return _LOADED


def request_duration(endpoint, seconds, response):
    """An http_request_duration timer for one request (response None if it failed to arrive)."""
    metrics = load()
    tags = {"endpoint": endpoint, "status": "succeeded" if response is not None and response.ok else "failed"}
    if response is not None:
        tags["http_status_code"] = response.status_code
    metrics.log(LOGGER, metrics.Point("timer", metrics.Metric.http_request_duration, seconds, tags))


def record_count(endpoint, count):
    """A record_count counter for records written since the last one."""
    metrics = load()
    metrics.log(LOGGER, metrics.Point("counter", metrics.Metric.record_count, count, {"endpoint": endpoint}))
