"""The repo's meltano.yml, as a user runs it: `meltano install`, then `meltano run` twice from saved state.

The project is copied to a temporary folder first, so .meltano/ and the plugin venvs never touch the
repo; the tap is installed by Meltano from that copy (pip_url `-e .`).
"""
import json
import os
import shutil
import subprocess

import pytest

from e2e_pipeline import (ALL_STREAMS, FULL_TABLES, MODIFIED, OPTED_IN, ROOT, as_instant, change_store, key_of,
                          store_records)

SELECTED = [stream for stream in ALL_STREAMS if stream not in OPTED_IN]  # meltano.yml's select

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STATE_ID = "dev:tap-bigcommerce-to-target-jsonl"
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", ".venvs", ".meltano", "__pycache__", "*.egg-info",
                                     "build", "dist", ".pytest_cache", "tests", "out", "demo-output")


def meltano(binary, project, env, *args, timeout=600):
    """Run one meltano command in the project; fail with its output if it fails."""
    result = subprocess.run([binary, *args], cwd=project, env=env, capture_output=True, text=True,
                            timeout=timeout)
    (project / "meltano.log").open("a").write(f"$ meltano {' '.join(args)}\n{result.stdout}{result.stderr}\n")
    assert result.returncode == 0, f"meltano {' '.join(args)} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result.stdout


def read_lines(folder, stream):
    path = folder / f"{stream}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_meltano_run_twice_resumes_from_saved_state(sandbox, store_size, tool, tmp_path, record_rows):
    binary = tool("meltano", "meltano")
    project = tmp_path / "project"
    shutil.copytree(ROOT, project, ignore=COPY_IGNORE)
    out = project / "output"
    out.mkdir()
    sb = sandbox(**store_size)
    cfg = sb.config()
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update({
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "MELTANO_ENVIRONMENT": "dev",
        "TAP_BIGCOMMERCE_CLIENT_ID": cfg["client_id"],
        "TAP_BIGCOMMERCE_ACCESS_TOKEN": cfg["access_token"],
        "TAP_BIGCOMMERCE_STORE_HASH": cfg["store_hash"],
        "TAP_BIGCOMMERCE_START_DATE": cfg["start_date"],
        "TAP_BIGCOMMERCE_BASE_URL": cfg["base_url"],
        "TAP_BIGCOMMERCE_PAGE_SIZE": "100",
        "TARGET_JSONL_DESTINATION_PATH": str(out),
    })

    meltano(binary, project, env, "install")
    meltano(binary, project, env, "run", "tap-bigcommerce", "target-jsonl")
    first = {stream: read_lines(out, stream) for stream in ALL_STREAMS}
    assert not any(first[stream] for stream in OPTED_IN), "streams that need extra scopes are opted into"
    for stream in SELECTED:
        loaded = sorted(key_of(stream, r) for r in first[stream])
        assert loaded == sorted(key_of(stream, r) for r in store_records(sb, stream)), stream
    saved = json.loads(meltano(binary, project, env, "state", "get", STATE_ID).strip().splitlines()[-1])
    bookmarks = saved["singer_state"]["bookmarks"]
    assert set(bookmarks) >= set(MODIFIED) | {"refunds"}, saved

    changed = change_store(sb, 4)
    meltano(binary, project, env, "run", "tap-bigcommerce", "target-jsonl")

    counts = {}
    for stream in SELECTED:
        lines = read_lines(out, stream)
        new = lines[len(first[stream]):]
        ids = {key_of(stream, r) for r in new}
        assert changed[stream] <= ids, f"{stream}: changed records missing from the second run"
        if stream in MODIFIED:
            bookmark = as_instant(bookmarks[stream]["date_modified"])
            assert all(as_instant(r["date_modified"]) >= bookmark for r in new), \
                f"{stream}: the second run ignored Meltano's saved state"
            assert len(new) <= len(changed[stream]) + 2, f"{stream}: {len(new)} records re-sent, expected the changes"
        elif stream in FULL_TABLES:
            assert len(new) == len(store_records(sb, stream)), f"{stream} is a full table: every record again"
        counts[stream] = len({key_of(stream, r) for r in lines})
    after = json.loads(meltano(binary, project, env, "state", "get", STATE_ID).strip().splitlines()[-1])
    assert after["singer_state"]["bookmarks"]["orders"] != bookmarks["orders"]
    record_rows("meltano/target-jsonl", counts)
