"""Requests, candidates, ranks, positions and labels of the synthetic world, vectorised.

For each simulated day (processed as one vectorised block):

1. Requests: users drawn by activity (heavy-tailed), times uniform in the day.
2. Candidates: part retrieved by interest (a category drawn from the user's interest, then an
   item of that category by exposure weight), part by popularity (exposure weight over the
   whole catalogue), part from a new-arrival slot (uniform over items created in the last
   week, as shops promote new products); only items created before the request are
   eligible; duplicates removed.
3. An upstream ranker scores candidates with the true click logit plus noise and assigns
   ``rank``; display ``position`` follows rank, except for a share of exploration requests
   shown in random order (so position bias is identifiable).
4. Labels from known probabilities (stored as ``true_p_*``):
   ``p_click = sigmoid(b + w_a * affinity + quality + user_bias - position_bias(position))``;
   order and add-to-cart happen only after a click, each with its own factors (price against
   purchasing power for orders, a user's cart propensity for add-to-cart), so the three tasks
   are correlated but different (PPM §3.2.3).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ppm.data.synthetic.world import DAY, World

CLICK_BIAS = -3.6
AFFINITY_WEIGHT = 3.0
POSITION_BIAS = 0.55      # per log(1 + position)
RANKER_NOISE = 1.0
EXPLORATION_SHARE = 0.1
INTEREST_SHARE = 0.55     # share of candidates retrieved by interest
NEW_ARRIVAL_SHARE = 0.15  # share of candidates from the new-arrival slot
NEW_ARRIVAL_DAYS = 7      # an item is a new arrival for this long after created_at
OVERSAMPLE = 1.5          # candidates drawn before de-duplication
ORDER_BIAS, CART_BIAS = -4.0, -2.5
POWER_PRICE_WEIGHT = (1.2, 0.7, 0.3)  # price aversion by purchasing power (low, mid, high)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def click_logit_wo_position(world: World, user, item):
    """True click logit of (user, item) pairs before the position effect."""
    affinity = np.einsum("...d,...d->...", world.users["z"][user], world.items["z"][item])
    return (CLICK_BIAS + AFFINITY_WEIGHT * affinity + world.items["quality"][item]
            + world.users["bias"][user]), affinity


@dataclasses.dataclass
class _Retrieval:
    """Cumulative exposure weights for drawing available items fast (inverse CDF)."""

    order: np.ndarray        # items sorted by (category, created_at)
    keys: np.ndarray         # category * 2**40 + created_at, sorted
    cum: np.ndarray          # cumulative buzz along `order`
    cat_start: np.ndarray    # first position of each category in `order`
    pop_order: np.ndarray    # items sorted by created_at
    pop_created: np.ndarray
    pop_cum: np.ndarray


def _retrieval(world: World) -> _Retrieval:
    it = world.items
    key = it["category"].astype(np.int64) * (1 << 40) + it["created_at"]
    order = np.argsort(key, kind="stable")
    pop_order = np.argsort(it["created_at"], kind="stable")
    return _Retrieval(
        order=order, keys=key[order], cum=np.cumsum(it["buzz"][order]),
        cat_start=np.searchsorted(key[order],
                                  np.arange(world.scale.n_categories, dtype=np.int64) << 40),
        pop_order=pop_order, pop_created=it["created_at"][pop_order],
        pop_cum=np.cumsum(it["buzz"][pop_order]))


def _draw(cum, lo, hi, u):
    """Inverse-CDF draws in segments [lo, hi) of a cumulative weight array (hi > lo)."""
    base = np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
    target = base + u * (cum[hi - 1] - base)
    return np.clip(np.searchsorted(cum, target, side="right"), lo, hi - 1)


def _candidates(world: World, r: _Retrieval, user, ts, rng):
    """Candidate items [R, M] (-1 = none) for requests of ``user`` at ``ts``."""
    n_req = len(user)
    m = int(np.ceil(world.scale.candidates * OVERSAMPLE))
    m_int = int(round(m * INTEREST_SHARE))
    # Popularity retrieval among items created before ts.
    hi = np.searchsorted(r.pop_created, ts, side="right")
    hi_m = np.repeat(hi, m)
    pop = np.full(n_req * m, -1, np.int64)
    ok = hi_m > 0
    pop[ok] = r.pop_order[_draw(r.pop_cum, np.zeros(ok.sum(), np.int64), hi_m[ok],
                                rng.random(ok.sum()))]
    pop = pop.reshape(n_req, m)
    # Interest retrieval: category from the user's interest, then an available item in it.
    logits = 4.0 * world.users["z"][user] @ world.category_centres.T
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    cdf = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    draws = rng.random((n_req, m_int, 1))
    cat = np.minimum((draws > cdf[:, None, :]).sum(-1), world.scale.n_categories - 1)
    cat = cat.reshape(-1).astype(np.int64)
    lo = r.cat_start[cat]
    hi_c = np.searchsorted(r.keys, (cat << 40) + np.repeat(ts, m_int), side="right")
    ok = hi_c > lo
    interest = pop[:, :m_int].reshape(-1).copy()  # fallback: popularity draws
    interest[ok] = r.order[_draw(r.cum, lo[ok], hi_c[ok], rng.random(ok.sum()))]
    # New-arrival slot: uniform over items created in the last NEW_ARRIVAL_DAYS.
    m_new = int(round(m * NEW_ARRIVAL_SHARE))
    lo_new = np.repeat(np.searchsorted(r.pop_created, ts - NEW_ARRIVAL_DAYS * DAY), m_new)
    hi_new = np.repeat(hi, m_new)
    fresh = pop[:, m_int:m_int + m_new].reshape(-1).copy()
    ok = hi_new > lo_new
    fresh[ok] = r.pop_order[lo_new[ok] + (rng.random(ok.sum()) * (hi_new[ok] - lo_new[ok])
                                          ).astype(np.int64)]
    cand = np.concatenate([interest.reshape(n_req, m_int), fresh.reshape(n_req, m_new),
                           pop[:, m_int + m_new:]], axis=1)
    # De-duplicate within a request, keep the first `candidates` distinct items.
    srt = np.argsort(cand, axis=1, kind="stable")
    sorted_c = np.take_along_axis(cand, srt, axis=1)
    dup_sorted = np.zeros_like(sorted_c, bool)
    dup_sorted[:, 1:] = sorted_c[:, 1:] == sorted_c[:, :-1]
    dup = np.zeros_like(dup_sorted)
    np.put_along_axis(dup, srt, dup_sorted, axis=1)
    keep = (~dup) & (cand >= 0)
    keep &= np.cumsum(keep, axis=1) <= world.scale.candidates
    return np.where(keep, cand, -1)


def conversion_probabilities(world: World, user, item, affinity):
    """P(order | click) and P(add-to-cart | click) of (user, item) pairs (any shape)."""
    it, users = world.items, world.users
    price_z = (np.log(it["price"][item]) - 3.0) / 0.7
    p_order_c = sigmoid(ORDER_BIAS + 1.0 * it["quality"][item] + 1.5 * affinity
                        - np.asarray(POWER_PRICE_WEIGHT)[users["power"][user]] * price_z)
    p_cart_c = sigmoid(CART_BIAS + 0.8 * affinity + 0.4 * price_z
                       + users["cart_propensity"][user] + 0.3 * it["quality"][item])
    return p_order_c, p_cart_c


def _ranks(scores, valid):
    """0-based rank of each valid entry by descending score, per row; -1 for invalid."""
    s = np.where(valid, scores, -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(s.shape[1])[None, :].repeat(len(s), 0), axis=1)
    return np.where(valid, ranks, -1)


def simulate_day(world: World, retrieval: _Retrieval, day_start: int, n_requests: int,
                 first_request: int, rng):
    """Simulates one day of requests. Returns a dict of event columns (numpy arrays)."""
    users = world.users
    act = users["activity"]
    user = rng.choice(len(act), size=n_requests, p=act / act.sum())
    ts = np.sort(day_start + rng.integers(0, DAY, n_requests))
    cand = _candidates(world, retrieval, user, ts, rng)
    valid = cand >= 0
    user_m = np.broadcast_to(user[:, None], cand.shape)
    logit, affinity = click_logit_wo_position(world, user_m[valid], cand[valid])
    noisy = np.full(cand.shape, -np.inf)
    noisy[valid] = logit + rng.normal(0, RANKER_NOISE, logit.shape)
    rank = _ranks(noisy, valid)
    explore = rng.random(n_requests) < EXPLORATION_SHARE
    position = np.where(explore[:, None], _ranks(rng.random(cand.shape), valid), rank)

    req = np.broadcast_to(np.arange(first_request, first_request + n_requests)[:, None],
                          cand.shape)[valid]
    item = cand[valid]
    u = user_m[valid]
    pos = position[valid]
    p_click = sigmoid(logit - POSITION_BIAS * np.log1p(pos))
    p_order_c, p_cart_c = conversion_probabilities(world, u, item, affinity)
    click = rng.random(len(item)) < p_click
    order = click & (rng.random(len(item)) < p_order_c)
    cart = click & (rng.random(len(item)) < p_cart_c)
    return {
        "request": req, "user": u, "ts": np.broadcast_to(ts[:, None], cand.shape)[valid],
        "item": item, "position": pos, "rank": rank[valid],
        "click": click.astype(np.int64), "order": order.astype(np.int64),
        "cart": cart.astype(np.int64), "true_p_click": p_click,
        "true_p_order": p_click * p_order_c, "true_p_cart": p_click * p_cart_c,
        "explore": np.broadcast_to(explore[:, None], cand.shape)[valid],
    }


def simulate(world: World, rng, progress=None):
    """Simulates every day from the first window start to the test window end.

    Args:
      world: the latent world.
      rng: a NumPy Generator.
      progress: optional callable taking the number of days done (for progress bars).

    Returns:
      dict of event column arrays, sorted by (ts, request, position).
    """
    start = min(w[0] for w in world.windows.values())
    n_days = (world.end_ts - start) // DAY
    parts, first = [], 0
    retrieval = _retrieval(world)
    per_day = world.scale.requests_per_day
    for d in range(n_days):
        n_req = max(1, rng.poisson(per_day))
        parts.append(simulate_day(world, retrieval, start + d * DAY, n_req, first, rng))
        first += n_req
        if progress is not None:
            progress(1)
    ev = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.lexsort((ev["position"], ev["request"], ev["ts"]))
    return {k: v[order] for k, v in ev.items()}
