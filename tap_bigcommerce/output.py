"""Singer messages on stdout, encoded with orjson and written page by page.

Every write is whole: SIGINT and SIGTERM are held back while a message (and the pages before
it) goes out, so a stopped sync never leaves half a line for the target.
"""
import contextlib
import signal
import sys
import threading

import orjson


class Writer:
    """Writes SCHEMA, RECORD, STATE and ACTIVATE_VERSION messages; STATE flushes what came before it."""

    def __init__(self, out=None):
        self._out = out if out is not None else sys.stdout.buffer
        self._pending = []  # pages of RECORD lines, written with the next STATE in one call

    def _message(self, message, flush=False):
        data = b"".join(self._pending) + orjson.dumps(message) + b"\n"
        self._pending.clear()
        with _signals_held():
            self._out.write(data)
            if flush:
                self._out.flush()

    def schema(self, stream, schema, key_properties, bookmark_properties):
        """A SCHEMA message, before the stream's first record."""
        message = {"type": "SCHEMA", "stream": stream, "schema": schema, "key_properties": key_properties}
        if bookmark_properties:
            message["bookmark_properties"] = bookmark_properties
        self._message(message)

    @staticmethod
    def record_lines(stream, records, time_extracted, version=None):
        """RECORD messages for one page, encoded (workers encode; the main thread writes)."""
        head = b'{"type":"RECORD","stream":' + orjson.dumps(stream) + b',"record":'
        tail = b',"time_extracted":"' + time_extracted.encode() + b'"'
        if version is not None:
            tail += b',"version":' + str(version).encode()
        tail += b"}\n"
        dumps = orjson.dumps
        return b"".join([head + dumps(record) + tail for record in records])

    def write(self, data):
        """Write encoded messages as they are (they go out with the next message)."""
        self._pending.append(data)

    def activate_version(self, stream, version):
        """ACTIVATE_VERSION: the target may now drop rows of older versions of a full-table stream."""
        self._message({"type": "ACTIVATE_VERSION", "stream": stream, "version": version})

    def state(self, value):
        """A STATE message, flushed so that it and every record before it reach the target."""
        self._message({"type": "STATE", "value": value}, flush=True)


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _signals_held():
    """Hold SIGINT and SIGTERM back until the block is done (main thread, where the OS allows)."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
