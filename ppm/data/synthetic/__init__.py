"""The synthetic e-commerce world: the embedded default dataset.

``python -m ppm.data.synthetic --out DIR --scale {tiny,demo,small,large} --seed N`` writes a
canonical dataset (see :mod:`ppm.data.canonical`) in which the papers' phenomena are real and
measurable:

- a latent semantic space shared by titles (English product words) and pictures (procedural
  64x64 PNGs), so pre-trained encoders can see item semantics (``world.py``, ``images.py``);
- heavy-tailed user activity and item exposure, new items arriving all the time, so the test
  day holds items rare or absent in training (PPM §4.5, Taobao §6.3.3);
- labels drawn from known probabilities with position bias, order and add-to-cart correlated
  with click but with their own factors (``behaviour.py``); the true probabilities are stored
  (``true_p_click``, ``true_p_order``, ``true_p_cart``), so the oracle AUC is known;
- text and image search logs with hard negatives (``queries.py``).

Generation is deterministic for a seed and vectorised with NumPy (see
``benchmarks/synthetic_generator.py`` for its speed).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ppm.data import canonical
from ppm.data.synthetic import behaviour, images, queries, search
from ppm.data.synthetic.world import (
    AGES,
    CITY_TIERS,
    GENDERS,
    POWER,
    SCALES,
    World,
    build_world,
    item_picture_attrs,
    titles,
)

__all__ = ["SCALES", "SCENARIOS", "generate", "build_world", "World"]

logger = logging.getLogger(__name__)
SCENARIOS = {"feed": SCALES, "search": search.SEARCH_SCALES}
IMAGE_SIZE = 64
_IMAGE_BATCH = 256  # small batches keep the float32 arrays cache-friendly


def _ids(prefix: str, idx, width: int) -> np.ndarray:
    """String ids like ``i0000042`` for integer indices (formats each distinct index once)."""
    uniq, inverse = np.unique(np.asarray(idx), return_inverse=True)
    names = np.array([f"{prefix}{k:0{width}d}" for k in uniq], dtype=object)
    return names[inverse.reshape(-1)]


def _item_table(world: World, rng, progress: bool) -> pa.Table:
    it = world.items
    n = len(it["category"])
    pictures: list = [None] * n
    with_image = np.flatnonzero(~it["no_image"])
    for s in tqdm(range(0, len(with_image), _IMAGE_BATCH), desc="pictures", unit="batch",
                  disable=not progress):
        idx = with_image[s:s + _IMAGE_BATCH]
        for i, png in zip(idx, images.encode_png(
                images.draw(item_picture_attrs(world, idx), IMAGE_SIZE))):
            pictures[i] = png
    nouns = np.array([name for name, _ in world.category_names], object)
    cols = {
        "item_id": _ids("i", np.arange(n), 7),
        "shop_id": _ids("s", it["shop"], 5),
        "brand_id": _ids("b", it["brand"], 5),
        "category_id": _ids("c", it["category"], 3),
        "title": titles(world, rng),
        "image": pictures,
        "entity": nouns[it["category"]],
        "created_at": it["created_at"],
        "price": it["price"],
        "true_quality": it["quality"],
        "true_buzz": it["buzz"],
        "true_latent": list(it["z"].astype(np.float32)),
    }
    schema = canonical.arrow_schema(canonical.ITEM_COLUMNS, {
        "true_quality": pa.float64(), "true_buzz": pa.float64(),
        "true_latent": pa.list_(pa.float32())})
    return pa.table(cols, schema=schema)


def _event_table(world: World, ev: dict) -> pa.Table:
    u = world.users
    user = ev["user"]
    cols = {
        "request_id": _ids("r", ev["request"], 9),
        "user_id": _ids("u", user, 7),
        "ts": ev["ts"].astype(np.int64),
        "item_id": _ids("i", ev["item"], 7),
        "position": ev["position"].astype(np.int64),
        # rank: null for the search scenario's sampled negatives, which no ranker scored.
        "rank": pa.array(ev["rank"].astype(np.int64), mask=ev["rank"] < 0),
        "query": ev["query"] if "query" in ev else np.full(len(user), "", object),
        "click": ev["click"], "order": ev["order"], "cart": ev["cart"],
        "user_gender": np.array(GENDERS, object)[u["gender"][user]],
        "user_age": np.array(AGES, object)[u["age"][user]],
        "user_city_tier": np.array(CITY_TIERS, object)[u["city_tier"][user]],
        "user_power": np.array(POWER, object)[u["power"][user]],
        "true_p_click": ev["true_p_click"], "true_p_order": ev["true_p_order"],
        "true_p_cart": ev["true_p_cart"],
        # 1 for exploration traffic, shown in random order rather than by the ranker.
        "true_explore": ev["explore"].astype(np.int64),
    }
    extra = {k: pa.string() for k in ("user_gender", "user_age", "user_city_tier",
                                        "user_power")}
    extra.update({k: pa.float64() for k in ("true_p_click", "true_p_order", "true_p_cart")})
    extra["true_explore"] = pa.int64()
    if "exposure" in ev:  # the search scenario (search.py)
        cols["exposure"] = np.array(search.EXPOSURES, object)[ev["exposure"]]
        cols["ranker_score"] = pa.array(ev["ranker_score"], mask=np.isnan(ev["ranker_score"]))
        cols["true_query_relevance"] = ev["query_relevance"]
        extra.update({"exposure": pa.string(), "ranker_score": pa.float64(),
                      "true_query_relevance": pa.float64()})
    return pa.table(cols, schema=canonical.arrow_schema(canonical.EVENT_COLUMNS, extra))


def _query_table(q: dict) -> pa.Table:
    neg = q["hard_negative"]
    cols = {
        "query": q["query"],
        "item_id": _ids("i", q["item"], 7),
        "kind": q["kind"],
        "query_image": q["query_image"],
        "hard_negative_item_id": np.where(neg >= 0, _ids("i", np.maximum(neg, 0), 7), None),
    }
    return pa.table(cols, schema=canonical.arrow_schema(canonical.QUERY_COLUMNS))


def generate(out_dir: str, scale: str = "tiny", seed: int = 0, progress: bool = False,
             with_queries: bool = True, scenario: str = "feed") -> canonical.DatasetMeta:
    """Generates a synthetic world and writes it as a canonical dataset.

    Args:
      out_dir: output folder (created; existing dataset files are overwritten).
      scale: one of :data:`SCALES` (``scenario="feed"``) or of
        :data:`~ppm.data.synthetic.search.SEARCH_SCALES` (``scenario="search"``).
      seed: random seed; the output is a deterministic function of (scenario, scale, seed).
      progress: show progress bars.
      with_queries: also write queries.parquet.
      scenario: ``feed`` (homepage-feed requests, the default) or ``search`` (search
        pre-ranking requests with M recalled candidates each: :mod:`.search`).

    Returns:
      The dataset metadata written to dataset.json.

    Raises:
      ValueError: unknown scenario or scale.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"Unknown scenario {scenario!r}; choose one of {sorted(SCENARIOS)}")
    scales = SCENARIOS[scenario]
    if scale not in scales:
        raise ValueError(f"Unknown {scenario} scale {scale!r}; choose one of {sorted(scales)}")
    rng_title, rng_events, rng_queries = (
        np.random.default_rng(s) for s in np.random.SeedSequence([seed, 1]).spawn(3))
    world = build_world(scales[scale], seed)
    n_days = (world.end_ts - world.windows["pretrain"][0]) // 86400
    simulate = search.simulate_search if scenario == "search" else behaviour.simulate
    with tqdm(total=n_days, desc="simulating days", unit="day", disable=not progress) as bar:
        ev = simulate(world, rng_events, progress=bar.update)
    os.makedirs(out_dir, exist_ok=True)
    items = _item_table(world, rng_title, progress)
    pq.write_table(items, os.path.join(out_dir, canonical.ITEMS_FILE), row_group_size=4096)
    events = _event_table(world, ev)
    pq.write_table(events, os.path.join(out_dir, canonical.EVENTS_FILE))
    counts = {"items": items.num_rows, "events": events.num_rows,
              "requests": int(len(np.unique(ev["request"]))),
              "users": int(len(np.unique(ev["user"]))),
              "clicks": int(ev["click"].sum()), "orders": int(ev["order"].sum()),
              "carts": int(ev["cart"].sum())}
    if with_queries:
        q = queries.make_queries(world, ev, rng_queries)
        pq.write_table(_query_table(q), os.path.join(out_dir, canonical.QUERIES_FILE))
        counts["queries"] = len(q["item"])
    extra = {"scale": scale, "seed": seed, "image_size": IMAGE_SIZE}
    name, source = f"synthetic-{scale}", f"ppm.data.synthetic --scale {scale} --seed {seed}"
    if scenario == "search":
        extra.update(scenario=scenario, candidates=world.scale.candidates,
                     displayed=search.DISPLAYED)
        counts.update({f"exposure_{e}": int((ev["exposure"] == k).sum())
                       for k, e in enumerate(search.EXPOSURES)})
        name, source = f"synthetic-search-{scale}", source + " --scenario search"
    meta = canonical.DatasetMeta(
        name=name, source=source,
        windows={k: list(map(int, v)) for k, v in world.windows.items()},
        counts=counts, licence="Synthetic data generated by this repository; no licence "
        "restrictions.", extra=extra)
    canonical.write_meta(out_dir, meta)
    logger.info("Wrote %s: %s", out_dir, counts)
    return meta
