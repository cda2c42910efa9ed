"""CLI: ``python -m ppm.data.synthetic --out DIR --scale tiny --seed 0``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from ppm.data.synthetic import SCALES, generate


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ppm.data.synthetic",
        description="Generate the synthetic e-commerce world as a canonical dataset "
        "(dataset.json, items.parquet, events.parquet, queries.parquet).")
    parser.add_argument("--out", required=True, help="Output dataset folder.")
    parser.add_argument(
        "--scale", default="tiny", choices=sorted(SCALES),
        help="World size: " + "; ".join(
            f"{k}: {s.n_items} items, {s.n_users} users, ~{s.requests_per_day} requests/day "
            f"x {s.candidates} candidates over {s.pretrain_days + 14 + s.test_days} days"
            for k, s in SCALES.items()))
    parser.add_argument("--seed", type=int, default=0, help="Random seed (output is "
                        "deterministic for a scale and seed).")
    parser.add_argument("--no_queries", action="store_true", help="Skip queries.parquet.")
    parser.add_argument("--quiet", action="store_true", help="No progress bars.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    meta = generate(args.out, args.scale, args.seed, progress=not args.quiet,
                    with_queries=not args.no_queries)
    print(json.dumps(meta.counts, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
