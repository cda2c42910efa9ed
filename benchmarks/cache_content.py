"""Diagnostic: how much of an item's click-relevant content the embedding cache carries.

In the synthetic world a user clicks by the affinity ``cos(user, z)`` between latent vectors
(``ppm.data.synthetic.world``), where ``z = normalise(category centre + brand offset + own
noise)``. An ID model knows a new item's category, brand and shop ids, so the only part of
``z`` that the PPM plug-in can add for a cold item is the item's own deviation from its
category-brand mean. This script regenerates the world's latents (deterministic in scale and
seed), aligns them with a cache by item id and reports, on held-out items (ridge regression,
80/20 split):

- R² of ``z`` from one-hot category + brand (what the ID features already give);
- R² of the item's own deviation ``z - mean(z | category, brand)`` from the cached
  ``[title | image]``, from the title alone and from the image alone (what PPM could add).

Run (after ``make demo``)::

    .venv/bin/python benchmarks/cache_content.py --run_root runs/demo

Writes ``benchmarks/results/cache_content.json``.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ppm  # noqa: E402,F401
from benchmarks import common  # noqa: E402


def ridge_r2(x: np.ndarray, y: np.ndarray, seed: int = 0, alpha: float = 1.0) -> float:
    """Held-out R² (pooled over outputs) of a ridge regression from ``x`` to ``y``."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))
    cut = int(0.8 * len(x))
    tr, te = idx[:cut], idx[cut:]
    x1 = np.hstack([x, np.ones((len(x), 1))])
    w = np.linalg.solve(x1[tr].T @ x1[tr] + alpha * np.eye(x1.shape[1]), x1[tr].T @ y[tr])
    resid = y[te] - x1[te] @ w
    return float(1.0 - (resid ** 2).sum() / ((y[te] - y[tr].mean(axis=0)) ** 2).sum())


def one_hot(values: np.ndarray) -> np.ndarray:
    _, inv = np.unique(values, return_inverse=True)
    return np.eye(inv.max() + 1)[inv]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_root", default="runs/demo")
    parser.add_argument("--out", default=common.result_path("cache_content"))
    args = parser.parse_args(argv)
    from ppm.data import cache as cache_lib
    from ppm.data import canonical
    from ppm.data.synthetic import world as world_lib

    meta = canonical.read_meta(os.path.join(args.run_root, "dataset"))
    world = world_lib.build_world(world_lib.SCALES[meta.extra["scale"]], meta.extra["seed"])
    items = world.items
    n = len(items["z"])
    cache = cache_lib.load_cache(os.path.join(args.run_root, "embeddings"))
    index = cache.index()
    rows = np.array([index[f"i{k:07d}"] for k in range(n)])
    z = items["z"]
    group = items["category"] * 100_000 + items["brand"]
    own = z.copy()
    for g in np.unique(group):
        mask = group == g
        own[mask] -= z[mask].mean(axis=0)
    both = cache.has_title[rows] & cache.has_image[rows]
    ids_x = np.hstack([one_hot(items["category"]), one_hot(items["brand"])])
    result = {
        "items": n, "items_with_title_and_image": int(both.sum()),
        "own_deviation_share_of_z_variance": float(own.var(axis=0).sum() / z.var(axis=0).sum()),
        "r2_z_from_category_brand_ids": ridge_r2(ids_x, z),
        "r2_own_deviation_from_cache": ridge_r2(cache.matrix()[rows][both], own[both]),
        "r2_own_deviation_from_title": ridge_r2(cache.title[rows][both], own[both]),
        "r2_own_deviation_from_image": ridge_r2(cache.image[rows][both], own[both]),
        "r2_z_from_cache": ridge_r2(cache.matrix()[rows][both], z[both]),
        "cache_encoders": {k: (cache.manifest.get(k) or {}).get("path")
                           for k in cache_lib.ENCODERS},
    }
    result["machine"] = common.machine()
    common.write_result(args.out, result)
    common.print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
