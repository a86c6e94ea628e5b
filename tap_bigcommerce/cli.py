"""Command line: parse arguments, check the inputs, then discover or sync."""
import argparse
import json
import logging
import os
import re
import signal
import sys
from urllib.parse import quote, quote_plus

from tap_bigcommerce.client import Client
from tap_bigcommerce.config import load_json, parse_catalog, parse_config, parse_state
from tap_bigcommerce.discover import discover
from tap_bigcommerce.errors import TapError
from tap_bigcommerce.output import Writer
from tap_bigcommerce.sync import Syncer
from tap_bigcommerce.version import __version__

LOGGER = logging.getLogger("tap_bigcommerce")


class Redact(logging.Filter):
    """Blanks the access token and client id out of every log line, whatever logger wrote it.

    Each secret is matched whole and in the forms it could be printed in (as repr() or JSON
    escapes it, URL-encoded). A value shorter than MIN_SECRET is matched only where it stands
    alone, so a placeholder client_id such as "x" (never sent anywhere) cannot garble a message.
    """

    MIN_SECRET = 8

    def __init__(self, secrets=()):
        super().__init__()
        self.secrets = secrets

    @property
    def secrets(self):
        return self._secrets

    @secrets.setter
    def secrets(self, values):
        self._secrets = tuple(value for value in values if value)
        patterns = []
        for secret in self._secrets:
            forms = {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1], quote(secret, safe=""), quote_plus(secret)}
            alternatives = "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True))
            if len(secret) >= self.MIN_SECRET:
                patterns.append(f"(?:{alternatives})")
            else:
                patterns.append(f"(?<![A-Za-z0-9_-])(?:{alternatives})(?![A-Za-z0-9_-])")
        self._pattern = re.compile("|".join(patterns)) if patterns else None

    def scrub(self, text):
        """The text with every secret replaced."""
        return self._pattern.sub("<redacted>", text) if self._pattern else text

    def filter(self, record):
        message = record.getMessage()
        if record.exc_info:  # a traceback could quote a secret too: format it here, scrubbed
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, None
        record.msg, record.args = self.scrub(message), None
        return True


class Terminated(BaseException):
    """SIGTERM arrived (cron wrappers, Airflow, Kubernetes and systemd send it to stop a job)."""


def _stop_on_signals(hooks):
    """SIGINT and SIGTERM run every hook (so no request goes out after them), then end the run."""

    def handler(signum, frame):
        for hook in hooks:
            hook()
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def parse_args(argv):
    """The command-line arguments."""
    parser = argparse.ArgumentParser(prog="tap-bigcommerce", description="Singer tap for BigCommerce.")
    parser.add_argument("--config", "-c", required=True, help="config JSON file")
    parser.add_argument("--discover", "-d", action="store_true", help="print the catalog and exit")
    parser.add_argument("--catalog", "--properties", "-p", dest="catalog", help="catalog JSON file (all streams if omitted)")
    parser.add_argument("--state", "-s", help="state JSON file from an earlier run")
    parser.add_argument("--version", action="version", version=f"tap-bigcommerce {__version__}")
    return parser.parse_args(argv)


def main(argv=None):
    """Entry point of the tap-bigcommerce command; returns the exit code."""
    args = parse_args(argv)
    stop_hooks = []
    redact = Redact()
    log_to_stderr(redact)
    try:
        _stop_on_signals(stop_hooks)
        config = parse_config(load_json(args.config, "config"))
        redact.secrets = config.secrets
        if args.discover:
            sys.stdout.write(json.dumps(discover(), indent=2) + "\n")
            return 0
        raw_catalog = load_json(args.catalog, "catalog") if args.catalog else discover()
        selections = parse_catalog(raw_catalog)
        state = parse_state(load_json(args.state, "state")) if args.state else {}
        client = Client(config)
        stop_hooks.append(client.stopping.set)
        Syncer(client, config, state, Writer()).run(selections)
        return 0
    except TapError as exc:
        return _fail(redact.scrub(str(exc)))
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return _fail("The target stopped reading the tap's output (broken pipe).")
    except (KeyboardInterrupt, Terminated) as exc:
        name = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT (Ctrl-C)"
        code = 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
        return _fail(f"Stopped by {name}; the last STATE line written covers every record before it.", code)
    except Exception as exc:  # a bug: still one line, with the details at debug level
        LOGGER.debug("Unexpected error", exc_info=True)
        return _fail(redact.scrub(f"Unexpected error ({type(exc).__name__}: {exc}); please report it."))


def log_to_stderr(redact):
    """Log lines go to stderr through the redaction filter (metrics.py puts this back after
    singer-python, which installs its own handler when it is imported)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(redact)
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def _fail(message, code=1):
    sys.stderr.write(f"tap-bigcommerce: error: {message}\n")
    return code


def run():
    """Console-script wrapper: exit with main()'s code."""
    sys.exit(main())
