"""CLI: ``python -m ppm.data.synthetic --out DIR --scale tiny --seed 0``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from ppm.data.synthetic import SCALES, SCENARIOS, generate
from ppm.data.synthetic.search import SEARCH_SCALES


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ppm.data.synthetic",
        description="Generate the synthetic e-commerce world as a canonical dataset "
        "(dataset.json, items.parquet, events.parquet, queries.parquet).")
    parser.add_argument("--out", required=True, help="Output dataset folder.")
    parser.add_argument(
        "--scenario", default="feed", choices=sorted(SCENARIOS),
        help="feed: homepage-feed requests, every row a displayed candidate (the default). "
        "search: search pre-ranking requests (GRACE): a query, M recalled candidates ranked by "
        "the ranking model (rank, ranker_score), the top 10 displayed, the others and random "
        "non-recalled items as negatives (column exposure); 15 training days and a test day.")
    parser.add_argument(
        "--scale", default="tiny", choices=sorted(set(SCALES) | set(SEARCH_SCALES)),
        help="World size. feed: " + "; ".join(
            f"{k}: {s.n_items} items, {s.n_users} users, ~{s.requests_per_day} requests/day "
            f"x {s.candidates} candidates over {s.pretrain_days + s.train_days + s.test_days} "
            "days" for k, s in SCALES.items()) + ". search: " + "; ".join(
            f"{k}: {s.n_items} items, ~{s.requests_per_day} requests/day x {s.candidates} "
            f"recalled candidates over {s.pretrain_days + s.train_days + s.test_days} days"
            for k, s in SEARCH_SCALES.items()))
    parser.add_argument("--seed", type=int, default=0, help="Random seed (output is "
                        "deterministic for a scale and seed).")
    parser.add_argument("--no_queries", action="store_true", help="Skip queries.parquet.")
    parser.add_argument("--quiet", action="store_true", help="No progress bars.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    meta = generate(args.out, args.scale, args.seed, progress=not args.quiet,
                    with_queries=not args.no_queries, scenario=args.scenario)
    print(json.dumps(meta.counts, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
