"""ppm.evaluate: the metrics serving gets (every candidate at the client's default position)
and a position-only baseline beside the model."""

import os

import numpy as np
import pytest

from ppm import evaluate, metrics
from ppm.data import pipeline
from ppm.serving import client


def _scored(labels, positions, users=None, requests=None):
    n = len(labels)
    return {"label_click": np.array(labels), "position": np.array(positions),
            "user_id": np.array(users or ["u"] * n), "request_id": np.array(requests or ["r"] * n),
            "item_freq": np.zeros(n, np.int64)}


def test_position_baseline_hand_computed():
    # score = -position: positives at 0 and 2, negatives at 1 and 3 -> pairs (0,1) (0,3) (2,3)
    # ordered right, (2,1) wrong: AUC 3/4. Top-2 of the request: positions 0 and 1 -> P@2 1/2.
    out = evaluate.position_baseline(_scored([1, 0, 1, 0], [0, 1, 2, 3]), ["click"])
    assert out["score"] == "-position" and "note" not in out
    m = out["tasks"]["click"]
    assert m["auc"] == pytest.approx(0.75) and m["gauc"] == pytest.approx(0.75)
    assert m["p@2"] == pytest.approx(0.5)
    assert m["logloss"] is None and m["positives"] == 2  # a rank, not a probability


@pytest.mark.parametrize("positions, declared, why", [
    ([0, 0, 0, 0], "displayed", "every example has position 0"),
    ([0, 1, 2, 3], "none", "positions: none"),
])
def test_position_baseline_without_positions(positions, declared, why):
    out = evaluate.position_baseline(_scored([1, 0, 1, 0], positions), ["click"], declared)
    assert out["tasks"] is None
    assert out["note"].startswith("no positions") and why in out["note"]


def test_evaluate_reports_metrics_at_the_serving_position(tiny_urm_run):
    result = evaluate.evaluate_run(tiny_urm_run, progress=False)
    served = result["at_serving_position"]
    assert served["position"] == client.DEFAULT_POSITION
    assert set(served["tasks"]) == set(result["tasks"])
    # What serving computes: the same examples, every position replaced by the default.
    model, inputs, config = evaluate.load_model(tiny_urm_run)
    files = pipeline.list_files(os.path.join(config.data.examples, result["split"]))
    ds = pipeline.make_dataset(files, inputs.schema, 64, training=False, deterministic=True)
    p, y, logged = [], [], []
    for feats, labels in ds:
        logged.append(feats["position"].numpy())
        feats = dict(feats, position=feats["position"] * 0 + client.DEFAULT_POSITION)
        p.append(model.probabilities(feats, training=False)["click"].numpy())
        y.append(labels["click"].numpy())
    p, y = np.concatenate(p), np.concatenate(y)
    assert len(np.unique(np.concatenate(logged))) > 1  # the synthetic world has real positions
    assert served["tasks"]["click"]["auc"] == pytest.approx(metrics.auc(y, p), abs=1e-6)
    assert served["tasks"]["click"]["logloss"] == pytest.approx(metrics.logloss(y, p),
                                                                abs=1e-5)
    # The synthetic world displayed its candidates: the position-only baseline is informative
    # (position bias), and it is reported beside the model.
    baseline = result["position_baseline"]
    assert result["positions"] == "displayed" and baseline["tasks"]["click"]["auc"] > 0.5
    table = evaluate.format_table(result)
    assert "at position 0" in table and "position only" in table and "oracle AUC" in table
    assert "positions: displayed" in table



def test_evaluate_reports_error_bars_warns_on_thin_buckets_and_keeps_scores(tiny_urm_run):
    result = evaluate.evaluate_run(tiny_urm_run, progress=False)
    click = result["tasks"]["click"]
    assert click["auc_se"] > 0 and result["bootstrap"]["over"] == "users"
    scores = evaluate.read_scores(result["scores"])
    # The error bar is the spread of the AUC over the same user draws, recomputed here.
    boot = metrics.Bootstrap(scores["user_id"], seed=evaluate.BOOTSTRAP_SEED)
    assert click["auc_se"] == pytest.approx(boot.auc_se(scores["label_click"],
                                                        scores["p_click"]))
    assert metrics.auc(scores["label_click"], scores["p_click"]) == pytest.approx(click["auc"])
    buckets = click["auc_by_frequency"]
    assert sum(b["examples"] for b in buckets.values()) == result["examples"]
    table = evaluate.format_table(result)
    # The tiny world's buckets all hold fewer than 50 clicks: each says so.
    assert all(b["positives"] < metrics.MIN_POSITIVES for b in buckets.values())
    assert table.count("too few to read") == len(buckets) and " ± " in table
