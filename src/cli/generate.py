"""``pstream generate webshop``: the notebook's example data as CSV."""
from __future__ import annotations

import sys

from cli.main import summary
from pipelines.example_data import DEFAULT_CUSTOMERS, DEFAULT_PRODUCTS, DEFAULT_RECORDS, write_webshop_csv


def register(subparsers) -> None:
    generate = subparsers.add_parser("generate", help=summary("generate"))
    kinds = generate.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True
    webshop = kinds.add_parser("webshop", help="web shop transactions as in the workshop notebook")
    webshop.add_argument("--records", type=int, default=DEFAULT_RECORDS, help="rows to write (default %(default)s)")
    webshop.add_argument("--customers", type=int, default=DEFAULT_CUSTOMERS, help="distinct customers (default %(default)s)")
    webshop.add_argument("--products", type=int, default=DEFAULT_PRODUCTS, help="distinct products (default %(default)s)")
    webshop.add_argument("--seed", type=int, default=42, help="random seed; the same seed gives the same data (default %(default)s)")
    webshop.add_argument("--output", "-o", default="example_input.csv", help="CSV file to write (default %(default)s)")
    webshop.set_defaults(func=_webshop)


def _webshop(args) -> int:
    try:
        count = write_webshop_csv(args.output, records=args.records, customers=args.customers,
                                  products=args.products, seed=args.seed)
    except ValueError as exc:
        print(f"pstream generate webshop: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {count} rows to {args.output}", file=sys.stderr)
    return 0
