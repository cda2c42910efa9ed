"""The search pre-ranking scenario of the synthetic world (GRACE, Xu et al., SIGIR 2024,
arXiv:2405.05606, §2.1 and §3.1.1).

``python -m ppm.data.synthetic --scenario search`` writes, instead of homepage-feed requests,
search requests as a pre-ranking model sees them. For each simulated day (one vectorised block):

1. Requests: users drawn by activity; each has an *intent*: a category drawn from the user's
   interests, then an item of it drawn by exposure weight. The query text is made from the
   intent item's words (category noun or synonym, one or two of colour, material, brand and
   style: :func:`~ppm.data.synthetic.queries.text_query`).
2. Recall: ``M`` candidates (``Scale.candidates``, 200 in the ``demo`` preset) among the items
   created before the request, the top ``M`` by ``RECALL_RELEVANCE * relevance +
   RECALL_POPULARITY * log(exposure weight) + Gumbel noise``, where relevance is the cosine
   between the item's and the intent item's latent vectors (the words of the query are read off
   that vector).
3. The ranking model scores all ``M`` candidates with the true click logit (without the position
   effect) plus noise; ``ranker_score`` is its probability and ``rank`` its order (0 = best).
4. The page shows the ranking model's top ``DISPLAYED`` (10) at ``position = rank``; clicks,
   orders and add-to-carts of displayed candidates come from stored true probabilities, as in
   the feed (``behaviour.py``), with the query's relevance in the click logit.
5. Negatives (§3.1.1): the recalled candidates not displayed (``exposure = "recalled"``, labels
   0, their ``position`` the slot their rank would have had) and ``M // 10`` items drawn uniformly
   among the available items not recalled (``exposure = "sampled"``: no rank, no score,
   ``position`` from ``M`` up). Displayed rows say ``exposure = "displayed"``.

A search world has 15 training days and a 16th for the test (GRACE §3.1.1), after a pretrain
window (the item graph's co-clicks, ``beam_jobs.item_graph``). Its size is scaled down: see
:data:`SEARCH_SCALES`.
"""

from __future__ import annotations

import numpy as np

from ppm.data import canonical
from ppm.data.synthetic import behaviour, queries
from ppm.data.synthetic.world import DAY, Scale, World, colour_words

# Search presets: the feed world's populations, fewer requests, M recalled candidates each.
# demo: 200 requests x (200 + 20) rows a day over 7 + 15 + 1 days, about 1,000,000 rows.
SEARCH_SCALES = {
    "tiny": Scale(8, 24, 12, 400, 150, 12, 60, 4, 300, 150, test_days=1, train_days=15),
    "demo": Scale(20, 100, 40, 4000, 3000, 200, 200, 7, 4000, 2000, test_days=1,
                  train_days=15),
}
DISPLAYED = 10            # candidates shown on the page (GRACE: 10 per page)
SAMPLED_SHARE = 0.1       # random non-recalled negatives per request, as a share of M
RECALL_RELEVANCE = 8.0
RECALL_POPULARITY = 0.5
QUERY_WEIGHT = 2.5        # weight of the query's relevance in the click logit
SEARCH_CLICK_BIAS = -5.5  # with QUERY_WEIGHT, a click-through rate of displayed rows near 15%
RANKER_NOISE = 0.7        # the ranking model's error on the true click logit
EXPOSURES = canonical.EXPOSURES


def _intents(world: World, r, user, ts, rng):
    """An intent item per request: a category of the user's interest, an item of it by
    exposure weight (-1 when no item of it exists yet)."""
    logits = 4.0 * world.users["z"][user] @ world.category_centres.T
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    cdf = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    cat = np.minimum((rng.random((len(user), 1)) > cdf).sum(-1),
                     world.scale.n_categories - 1).astype(np.int64)
    lo = r.cat_start[cat]
    hi = np.searchsorted(r.keys, (cat << 40) + ts, side="right")
    intent = np.full(len(user), -1, np.int64)
    ok = hi > lo
    intent[ok] = r.order[behaviour._draw(r.cum, lo[ok], hi[ok], rng.random(ok.sum()))]
    return intent


def simulate_search_day(world: World, retrieval, day_start: int, n_requests: int,
                        first_request: int, rng) -> dict:
    """One day of search requests: event columns (numpy arrays), one row per candidate."""
    it, users = world.items, world.users
    m = world.scale.candidates
    n_sampled = max(1, int(round(SAMPLED_SHARE * m)))
    act = users["activity"]
    user = rng.choice(len(act), size=n_requests, p=act / act.sum())
    ts = np.sort(day_start + rng.integers(0, DAY, n_requests))
    intent = _intents(world, retrieval, user, ts, rng)
    keep = intent >= 0
    user, ts, intent = user[keep], ts[keep], intent[keep]
    n_req = len(user)
    available = it["created_at"][None, :] <= ts[:, None]  # [R, I]
    relevance = it["z"][intent] @ it["z"].T
    recall = (RECALL_RELEVANCE * relevance + RECALL_POPULARITY * np.log(it["buzz"])[None, :]
              + rng.gumbel(size=relevance.shape))
    recall = np.where(available, recall, -np.inf)
    m_req = np.minimum(available.sum(1), m)
    top = np.argsort(-recall, axis=1)[:, :m]  # [R, M], best first
    valid = np.arange(m)[None, :] < m_req[:, None]
    user_m = np.broadcast_to(user[:, None], top.shape)
    rel = np.take_along_axis(relevance, top, axis=1)
    logit, affinity = behaviour.click_logit_wo_position(world, user_m, top)
    logit = logit - behaviour.CLICK_BIAS + SEARCH_CLICK_BIAS + QUERY_WEIGHT * rel
    noisy = np.where(valid, logit + rng.normal(0, RANKER_NOISE, logit.shape), -np.inf)
    rank = behaviour._ranks(noisy, valid)
    displayed = valid & (rank < DISPLAYED)
    p_click = np.where(displayed, behaviour.sigmoid(
        logit - behaviour.POSITION_BIAS * np.log1p(np.maximum(rank, 0))), 0.0)
    p_order_c, p_cart_c = behaviour.conversion_probabilities(world, user_m, top, affinity)
    click = rng.random(top.shape) < p_click
    order = click & (rng.random(top.shape) < p_order_c)
    cart = click & (rng.random(top.shape) < p_cart_c)

    # Random negatives among the available items that were not recalled.
    recalled = np.zeros_like(available)
    np.put_along_axis(recalled, top, valid, axis=1)
    pool = available & ~recalled
    pick = np.argsort(np.where(pool, rng.random(pool.shape), np.inf), axis=1)[:, :n_sampled]
    pick_ok = np.take_along_axis(pool, pick, axis=1)

    request = np.arange(first_request, first_request + n_req)
    ts_m = ts[:, None]
    rows = {
        "request": (np.broadcast_to(request[:, None], top.shape)[valid],
                    np.broadcast_to(request[:, None], pick.shape)[pick_ok]),
        "user": (user_m[valid], np.broadcast_to(user[:, None], pick.shape)[pick_ok]),
        "ts": (np.broadcast_to(ts_m, top.shape)[valid],
               np.broadcast_to(ts_m, pick.shape)[pick_ok]),
        "item": (top[valid], pick[pick_ok]),
        "position": (rank[valid], (m + np.broadcast_to(np.arange(n_sampled), pick.shape))
                     [pick_ok]),
        "rank": (rank[valid], np.full(pick_ok.sum(), -1)),
        "ranker_score": (behaviour.sigmoid(noisy[valid]), np.full(pick_ok.sum(), np.nan)),
        "exposure": (np.where(displayed[valid], 0, 1), np.full(pick_ok.sum(), 2)),
        "query_relevance": (rel[valid], np.take_along_axis(relevance, pick, 1)[pick_ok]),
        "intent": (np.broadcast_to(intent[:, None], top.shape)[valid],
                   np.broadcast_to(intent[:, None], pick.shape)[pick_ok]),
    }
    for name, value in (("click", click), ("order", order), ("cart", cart)):
        rows[name] = (value[valid].astype(np.int64), np.zeros(pick_ok.sum(), np.int64))
    for name, value in (("true_p_click", p_click), ("true_p_order", p_click * p_order_c),
                        ("true_p_cart", p_click * p_cart_c)):
        rows[name] = (value[valid], np.zeros(pick_ok.sum()))
    return {k: np.concatenate(v) for k, v in rows.items()}


def simulate_search(world: World, rng, progress=None) -> dict:
    """Every day of the search world: event columns sorted by (ts, request, position), plus
    ``query_text`` (one query per request, indexed by request number)."""
    start = min(w[0] for w in world.windows.values())
    n_days = (world.end_ts - start) // DAY
    retrieval = behaviour._retrieval(world)
    parts, first = [], 0
    for d in range(n_days):
        n_req = max(1, rng.poisson(world.scale.requests_per_day))
        part = simulate_search_day(world, retrieval, start + d * DAY, n_req, first, rng)
        parts.append(part)
        first += n_req
        if progress is not None:
            progress(1)
    ev = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.lexsort((ev["position"], ev["request"], ev["ts"]))
    ev = {k: v[order] for k, v in ev.items()}
    # One query per request, from its intent item's words.
    req, first_row = np.unique(ev["request"], return_index=True)
    colours = colour_words(world)
    text = {int(r): queries.text_query(world, int(i), colours[i], rng)
            for r, i in zip(req, ev["intent"][first_row])}
    ev["query"] = np.array([text[int(r)] for r in ev["request"]], object)
    ev["explore"] = np.zeros(len(ev["request"]), bool)
    return ev
