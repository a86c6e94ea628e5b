"""The sandbox command line starts a store, writes a tap config and a ready file, and stops on SIGTERM."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def test_cli_serves_writes_config_and_stops_on_sigterm(tmp_path):
    config, ready, log = tmp_path / "config.json", tmp_path / "ready", tmp_path / "log.jsonl"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tap_bigcommerce.sandbox", "--port", "0", "--orders", "30", "--store-hash", "cli",
         "--write-config", str(config), "--ready-file", str(ready), "--log", str(log), "--quota", "7"],
        env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 20
        while not (ready.exists() and ready.read_text().endswith("\n")):
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
        base_url = ready.read_text().strip()
        cfg = json.loads(config.read_text())
        assert cfg == {"client_id": "sandbox-client", "access_token": "sandbox-token", "store_hash": "cli",
                       "start_date": "2020-01-01T00:00:00Z", "base_url": base_url}
        resp = requests.get(f"{base_url}/stores/cli/v2/orders", params={"limit": 250},
                            headers={"X-Auth-Token": cfg["access_token"]}, timeout=10)
        assert resp.status_code == 200 and len(resp.json()) == 30
        assert resp.headers["X-Rate-Limit-Requests-Quota"] == "7"
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert base_url in stderr
    assert json.loads(log.read_text().splitlines()[0])["status"] == 200
