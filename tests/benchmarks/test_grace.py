"""benchmarks/grace.py's arithmetic on made-up scores: Recall@k (GRACE Eq. 12) and the
long-tail requests."""

import numpy as np

from benchmarks import grace


def _scores(requests):
    """``requests``: per request, (ranks, p_click) lists; -1 ranks are sampled negatives."""
    out = {"request_id": [], "rank": [], "p_click": [], "item_freq": []}
    for r, (ranks, p, freq) in enumerate(requests):
        out["request_id"] += [f"r{r}"] * len(ranks)
        out["rank"] += ranks
        out["p_click"] += p
        out["item_freq"] += freq
    return {k: np.asarray(v) for k, v in out.items()}


def test_recall_at_k_counts_the_ranking_models_top_k_in_the_pre_rankers_top_k():
    s = _scores([
        # the pre-ranker's order: ranks 1, 0, 3, 2 (and a sampled negative scored highest)
        ([0, 1, 2, 3, -1], [0.8, 0.9, 0.6, 0.7, 0.99], [5] * 5),
        # exactly reversed
        ([0, 1, 2, 3], [0.1, 0.2, 0.3, 0.4], [1] * 4),
    ])
    got = grace.recall_at_k(s, ks=(1, 2, 4, 5))
    # k=1: request 0's best is rank 1 (miss), request 1's is rank 3 (miss)
    assert got[1] == 0.0
    # k=2: request 0 {1, 0} -> 2/2; request 1 {3, 2} -> 0/2
    assert got[2] == 0.5
    assert got[4] == 1.0
    assert got[5] is None  # no request has 5 recalled candidates
    only = grace.recall_at_k(s, ks=(2,), requests={"r1"})
    assert only[2] == 0.0


def test_tied_scores_do_not_pass_for_consistency():
    n = 200
    s = _scores([(list(range(n)), [0.5] * n, [1] * n)])  # a constant model
    got = grace.recall_at_k(s, ks=(10,))
    assert got[10] < 0.5  # in the examples' own order it would be 1.0


def test_tail_requests_are_those_of_rarely_seen_candidates():
    s = _scores([([0, 1], [0.5, 0.4], [f, f]) for f in (1, 2, 50, 80, 90, 100, 3, 70, 60, 40)])
    assert grace.tail_requests(s, share=0.2) == {"r0", "r1"}
