"""Run the tap the way a user would and read what it prints; shared by the tests."""
import json
import os
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path


TAP = [sys.executable, "-m", "tap_bigcommerce"]
STREAM_NAMES = ("coupons", "customers", "orders", "products")
FAST = {"retry_base_delay": 0.01}  # retries without the production backoff delays


@dataclass
class TapRun:
    """What one tap run printed."""

    returncode: int
    stdout: str
    stderr: str

    @cached_property
    def messages(self):
        """Every stdout line parsed as a Singer message (parsed once)."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def records(self, stream):
        """The RECORD payloads of one stream, in order."""
        return [m["record"] for m in self.messages if m["type"] == "RECORD" and m["stream"] == stream]

    def ids(self, stream):
        """The ids of one stream's records, in order."""
        return [record["id"] for record in self.records(stream)]

    @property
    def last_state(self):
        """The value of the last STATE message."""
        states = [m["value"] for m in self.messages if m["type"] == "STATE"]
        return states[-1] if states else None

    @property
    def error_lines(self):
        """stderr lines that are not log lines."""
        return [line for line in self.stderr.splitlines() if line.startswith("tap-bigcommerce: error:")]


def write_json(path, value):
    """Write value as JSON to path and return the path as a string."""
    Path(path).write_text(json.dumps(value))
    return str(path)


def run_tap(workdir, config, *args, catalog=None, state=None, timeout=120):
    """Run the tap as a subprocess, the way a user or orchestrator would."""
    command = TAP + ["--config", write_json(workdir / "config.json", config)]
    if catalog is not None:
        command += ["--catalog", write_json(workdir / "catalog.json", catalog)]
    if state is not None:
        command += ["--state", write_json(workdir / "state.json", state)]
    command += list(args)
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=_env())
    return TapRun(done.returncode, done.stdout, done.stderr)


def catalog_of(workdir, config, streams=STREAM_NAMES):
    """The discovered catalog with only these streams selected (by default the four the sandbox
    holds as lists, leaving out the order family, whose per-order coupons cost a request each)."""
    catalog = json.loads(run_tap(workdir, config, "--discover").stdout)
    for entry in catalog["streams"]:
        entry["metadata"][0]["metadata"]["selected"] = entry["stream"] in streams
    return catalog


def start_tap(workdir, config, state=None, stderr=subprocess.DEVNULL, catalog=None):
    """Start the tap without waiting, stdout piped, for tests that kill it half-way."""
    command = TAP + ["--config", write_json(workdir / "config.json", config)]
    if catalog is not None:
        command += ["--catalog", write_json(workdir / "catalog.json", catalog)]
    if state is not None:
        command += ["--state", write_json(workdir / "state.json", state)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=_env())


def kill_after(process, states=None, at=None):
    """Read a started tap's messages and SIGKILL it at its `states`-th STATE, or at the first
    message for which at(message) is true. Returns what a target would have committed (every
    message up to the last STATE seen) and how many STATEs came."""
    kept, pending, seen = [], [], 0
    for line in process.stdout:
        pending.append(json.loads(line))
        if at is not None and at(pending[-1]):
            process.kill()
            break
        if pending[-1]["type"] == "STATE":
            # A target commits what came before a STATE; whatever follows it is lost with the kill.
            kept.extend(pending)
            pending, seen = [], seen + 1
            if seen == states:
                process.kill()
                break
    process.wait()
    return kept, seen


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def ids_by_stream(store):
    """The sandbox's current ids per stream."""
    return {name: {record["id"] for record in store.records(name)} for name in STREAM_NAMES}


def grouped(messages):
    """Message types in order, per stream (for checking SCHEMA comes first)."""
    order = defaultdict(list)
    for message in messages:
        order[message.get("stream")].append(message["type"])
    return order
