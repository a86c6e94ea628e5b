"""Run tap-bigcommerce 1.1.3 (PyPI) against another API host, for the benchmark only.

tap-bigcommerce 1.1.3 hard-codes its host in the class attribute
``tap_bigcommerce.bigcommerce.Bigcommerce.base_url = "https://api.bigcommerce.com/stores/"``
and builds every URL from it: ``/v2/time`` (its authorisation check), the list endpoints, and,
for orders, the sub-resource URLs the store returns inside each order (those already point at
the sandbox, since the sandbox writes its own base URL into them).

This wrapper reads ``base_url`` from the same ``--config`` file the tap reads (1.1.3 ignores
that key), sets that one attribute to ``<base_url>/stores/``, and then calls the tap's own
``main()`` with the command line untouched. Nothing else is changed: the tap's paging, page
size (50), sub-resource fetching, transform, singer.Transformer and JSON writing run as shipped,
so its CPU per record is the packaged tap's.

Run it with the 1.1.3 virtualenv's interpreter:
    .venvs/tap-bigcommerce-1.1.3/bin/python scripts/bench_shim/run_tap_bigcommerce_1_1_3.py \
        --config CONFIG --catalog CATALOG
"""
import json
import sys


def _config_path(argv):
    """The value of --config / -c in the tap's command line."""
    for index, arg in enumerate(argv):
        if arg in ("--config", "-c") and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    raise SystemExit("run_tap_bigcommerce_1_1_3: --config is required")


def main():
    """Point Bigcommerce.base_url at the config's base_url, then run the packaged tap."""
    with open(_config_path(sys.argv[1:]), encoding="utf-8") as handle:
        base_url = json.load(handle)["base_url"].rstrip("/")

    import tap_bigcommerce
    from tap_bigcommerce.bigcommerce import Bigcommerce

    Bigcommerce.base_url = f"{base_url}/stores/"
    tap_bigcommerce.main()


if __name__ == "__main__":
    main()
