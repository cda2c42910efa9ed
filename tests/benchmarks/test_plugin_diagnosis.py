"""benchmarks/plugin_diagnosis.py on the tiny URM run: movement, the unknown row, reliance."""

import os

import numpy as np

from benchmarks import plugin_diagnosis
from ppm import evaluate, metrics
from ppm.data import pipeline


def test_diagnosis_of_a_fine_tuned_urm(tiny_urm_run, tiny_ppm_run):
    result = plugin_diagnosis.diagnose(tiny_urm_run, tiny_ppm_run[0])
    movement = result["movement"]
    assert movement[0] == {"step": 0, "relative_l2": 0.0, "most_moved": None,
                           "most_moved_relative_l2": 0.0}
    steps = [m["step"] for m in movement]
    assert steps == sorted(steps) and len(steps) >= 2
    # fine-tuning moved the plug-in away from the pre-trained weights
    assert all(m["relative_l2"] > 0 for m in movement[1:])
    assert movement[-1]["most_moved_relative_l2"] >= movement[-1]["relative_l2"]

    model, inputs, config = evaluate.load_model(tiny_urm_run)
    by_count = result["unknown_row"]["by_count"]
    assert sum(b["items"] for b in by_count.values()) == len(
        model.idsm.embedders[0].embeddings[0].vocabulary)

    # the un-ablated model is the evaluated one: same AUC on the same examples (up to the
    # ties that float32 probabilities near 0.5 make where the logits differ)
    files = pipeline.list_files(os.path.join(config.data.examples, "test"))
    scored = evaluate.score(model, files, inputs.schema, 256, progress=False)
    reliance = result["reliance"]
    assert reliance["all"]["examples"] == len(scored["p_click"])
    assert reliance["all"]["clicks"] == int(scored["label_click"].sum())
    assert np.isclose(reliance["all"]["auc"], metrics.auc(scored["label_click"],
                                                          scored["p_click"]), atol=2e-3)
    assert np.isclose(reliance["all"]["mean_p_click"], scored["p_click"].mean(), atol=1e-5)
    assert sum(reliance[b]["examples"] for b in reliance if b != "all") == \
        reliance["all"]["examples"]
    # each part, replaced by its mean, changes the scores
    for part in ("id", "plugin"):
        assert reliance["all"][f"logit_change_without_{part}"] > 0
    assert "| 0 |" in plugin_diagnosis.tables([dict(result, label="urm")])
