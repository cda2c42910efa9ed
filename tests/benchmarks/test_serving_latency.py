"""benchmarks/serving_latency.py's in-process breakdown: it times the parts the served model
is made of (IDSM, the plug-in, the head) and both signatures, on a real ranking request."""

import os

from benchmarks import serving_latency
from ppm.serving import requests


def test_breakdown_times_both_signatures_and_urms_parts(tiny_urm_run, tiny_world,
                                                        tiny_examples):
    ranking = requests.sample_ranking_request(
        tiny_examples[0], os.path.join(tiny_world, "items.parquet"), num_candidates=30,
        history=50)
    got = serving_latency.breakdown(tiny_urm_run, ranking, n=3)
    assert sorted(got) == ["head_ms", "idsm_ms", "listwise_ms", "listwise_unfolded_ms",
                           "plugin_ms", "pointwise_ms"]
    assert all(v > 0 for v in got.values())
