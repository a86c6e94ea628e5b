"""Command line for the sandbox store: `tap-bigcommerce-sandbox` or `python -m tap_bigcommerce.sandbox`."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Optional, Sequence

from tap_bigcommerce.sandbox.server import FAULTS, Sandbox, SandboxOptions


def _same_second(value: str) -> tuple:
    """Parse STREAM=N for --same-second."""
    stream, sep, count = value.partition("=")
    if not sep or not count.isdigit():
        raise argparse.ArgumentTypeError(f"expected STREAM=N, got {value!r}")
    return stream, int(count)


def _fault_at(value: str) -> tuple:
    """Parse N=FAULT for --fault-at."""
    number, sep, fault = value.partition("=")
    if not sep or not number.isdigit() or fault not in FAULTS:
        raise argparse.ArgumentTypeError(f"expected N=FAULT with FAULT in {', '.join(FAULTS)}, got {value!r}")
    return int(number), fault


def build_parser() -> argparse.ArgumentParser:
    """The sandbox's command-line options."""
    parser = argparse.ArgumentParser(prog="tap-bigcommerce-sandbox",
                                     description="Serve a local store that answers like the BigCommerce API.")
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    add("--port", type=int, default=0, help="port (default 0: a free port)")
    add("--store-hash", default="sandbox")
    add("--token", default="sandbox-token", help="access token with all four read-only scopes")
    add("--seed", type=int, default=1, help="seed for the generated data")
    add("--coupons", type=int, default=40)
    add("--customers", type=int, default=150)
    add("--orders", type=int, default=400)
    add("--products", type=int, default=120)
    add("--brands", type=int, default=40)
    add("--customer-groups", type=int, default=3)
    add("--channels", type=int, default=4)
    add("--gift-certificates", type=int, default=30)
    add("--currencies", type=int, default=3)
    add("--promotions", type=int, default=25)
    add("--category-trees", type=int, default=2)
    add("--categories", type=int, default=40)
    add("--subscribers", type=int, default=60)
    add("--customer-attributes", type=int, default=5)
    add("--customer-attribute-values", type=int, default=80)
    add("--price-lists", type=int, default=4)
    add("--promotion-codes", type=int, default=60, help="codes, spread over the coupon promotions")
    add("--price-list-records", type=int, default=120, help="price-list records, spread over the price lists")
    add("--metafields", type=int, default=40, help="metafields of each resource type (products, orders, customers)")
    add("--quota", type=int, default=150, help="requests per window (default 150)")
    add("--window-ms", type=int, default=30000, help="rate-limit window in ms (default 30000)")
    add("--latency-ms", type=float, default=0, help="delay before every answer")
    add("--error-rate", type=float, default=0.0, help="share of data requests answered 500/502/503/504")
    add("--drop-rate", type=float, default=0.0, help="share of data requests whose connection is dropped")
    add("--truncate-rate", type=float, default=0.0, help="share of data requests answered with half a body")
    add("--fault-seed", type=int, default=0)
    add("--fault-at", type=_fault_at, action="append", default=[], metavar="N=FAULT",
        help="force a fault on data request N (repeatable)")
    add("--same-second", type=_same_second, action="append", default=[], metavar="STREAM=N",
        help="add N records of STREAM sharing one date_modified second (repeatable)")
    add("--exclusive-bounds", action="append", default=[], metavar="STREAM",
        help="make STREAM's date bounds strict (> and <) rather than inclusive; 'all' for every stream")
    add("--redirect-to", default="http://127.0.0.1:9", help="where the 'redirect' fault points")
    add("--refunds", type=int, default=None, help="refunds on random orders (default: one per ten orders)")
    add("--embedded-line-cap", type=int, default=None, help="cut each consignment's embedded line items to N")
    add("--prewarm", action="store_true",
        help="encode every record at start, with the include= lists tap-bigcommerce sends (for benchmarks)")
    add("--lenient", action="store_true", help="ignore unknown query parameters instead of rejecting them")
    add("--write-config", metavar="PATH", help="write a tap config JSON for this sandbox")
    add("--log", metavar="PATH", help="append the request log as JSON lines")
    add("--ready-file", metavar="PATH", help="write the base URL here once listening")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the sandbox until SIGINT or SIGTERM."""
    args = build_parser().parse_args(argv)
    options = SandboxOptions(
        seed=args.seed, coupons=args.coupons, customers=args.customers, orders=args.orders,
        products=args.products, brands=args.brands, customer_groups=args.customer_groups,
        channels=args.channels, gift_certificates=args.gift_certificates, currencies=args.currencies,
        promotions=args.promotions, category_trees=args.category_trees, categories=args.categories, subscribers=args.subscribers,
        customer_attributes=args.customer_attributes, customer_attribute_values=args.customer_attribute_values,
        price_lists=args.price_lists, promotion_codes=args.promotion_codes,
        price_list_records=args.price_list_records, product_metafields=args.metafields, order_metafields=args.metafields,
        customer_metafields=args.metafields,
        quota=args.quota, window_ms=args.window_ms, latency_ms=args.latency_ms,
        error_rate=args.error_rate, drop_rate=args.drop_rate, truncate_rate=args.truncate_rate,
        fault_seed=args.fault_seed, faults_at=dict(args.fault_at), same_second=dict(args.same_second),
        store_hash=args.store_hash, token=args.token, strict=not args.lenient, host=args.host,
        port=args.port, log_path=args.log, redirect_to=args.redirect_to, refunds=args.refunds,
        embedded_line_cap=args.embedded_line_cap,
        exclusive_bounds="all" if "all" in args.exclusive_bounds else tuple(args.exclusive_bounds))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with Sandbox(options) as sandbox:
        if args.prewarm:
            sandbox.prewarm_for_tap()
        if args.write_config:
            with open(args.write_config, "w", encoding="utf-8") as handle:
                json.dump(sandbox.config(), handle, indent=2)
        if args.ready_file:
            with open(args.ready_file, "w", encoding="utf-8") as handle:
                handle.write(sandbox.base_url + "\n")
        print(f"BigCommerce sandbox listening on {sandbox.base_url} "
              f"(store hash {args.store_hash!r})", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
