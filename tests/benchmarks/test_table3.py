"""benchmarks/table3.py's arithmetic: rows, paired differences and thin buckets, on made-up
scores."""

import argparse

import numpy as np
import pytest

from benchmarks import table3
from ppm import evaluate


def _scores(tmp_path, name, y, p, users, freq):
    n = len(y)
    scored = {"p_click": p, "label_click": y, "request_id": np.arange(n).astype(str),
              "user_id": users, "item_id": np.arange(n).astype(str), "item_freq": freq,
              "position": np.zeros(n, int)}
    folder = tmp_path / name
    folder.mkdir()
    return evaluate.write_scores(str(folder), "test", scored, ["click"])


def test_variants_and_only_select_rows():
    assert table3.parse_variant("A=urm:model.id_dropout=0.3") == (
        "A", "urm", "train_large", "model.id_dropout=0.3")
    with pytest.raises(argparse.ArgumentTypeError, match="LABEL=EXPERIMENT"):
        table3.parse_variant("no experiment")
    args = argparse.Namespace(only=["urm_wo_ppm"], variant=[("V", "urm", "train_large", "x=1")])
    assert [r[0] for r in table3.rows(args)] == ["URM wo. PPM", "V"]
    assert len(table3.rows(argparse.Namespace(only=[], variant=[]))) == len(table3.ROWS) + len(
        table3.OVERRIDE_ROWS)


def test_paired_differences_see_a_better_model_and_zero_for_the_same(tmp_path):
    rng = np.random.default_rng(0)
    n = 4000
    y = rng.integers(0, 2, n)
    users = rng.integers(0, 400, n).astype(str)
    freq = rng.choice([0, 10, 200], n)
    weak = y * 0.3 + rng.normal(size=n)
    # The better model differs from the weak one only on never-seen items.
    strong = np.where(freq == 0, y * 1.5 + rng.normal(size=n), weak)
    results = {"seeds": [0], "rows": [
        {"label": label, "seed": 0, "metrics": {"scores": _scores(tmp_path, label, y, p, users,
                                                                  freq)}}
        for label, p in (("URM wo. PPM", weak), ("better", strong), ("same", weak))]}
    d = table3.paired_differences(results, replicates=100)
    mean, se, seeds = d["better"]["0"]
    assert mean > 5 * se > 0 and seeds == 1
    assert d["better"]["100+"][0] == 0.0 and d["same"]["all"][:2] == (0.0, 0.0)
    assert "+0.0000 ± 0.0000" in table3.difference_table(results)


def test_thin_buckets_are_flagged():
    buckets = {"0": {"examples": 300, "positives": 9}, "1-4": {"examples": 900,
                                                               "positives": 120}}
    results = {"rows": [{"metrics": {"tasks": {"click": {"auc_by_frequency": buckets}}}}]}
    (warning,) = table3.thin_buckets(results)
    assert "seen 0x holds 9 clicks" in warning


def test_passes_decide_the_steps_even_when_the_preset_sets_its_own(tiny_world, tiny_examples,
                                                                  tiny_cache):
    import math

    from ppm import train
    from tests.ranking_fixtures import tiny_config

    n = train.window_examples(tiny_config("ppm_pretrain", tiny_world, tiny_examples, tiny_cache))
    for preset_passes in (0.0, 3.0):  # the tiny preset counts steps; demo sets passes
        c = tiny_config("ppm_pretrain", tiny_world, tiny_examples, tiny_cache,
                        trainer={"train_passes": preset_passes})
        table3.set_passes(c, 2)
        train.resolve_train_steps(c)
        assert c.trainer.train_steps == math.ceil(2 * n / c.data.global_batch_size)
    c = tiny_config("ppm_pretrain", tiny_world, tiny_examples, tiny_cache)
    table3.set_passes(c, 0)  # 0: the preset's own length
    train.resolve_train_steps(c)
    assert c.trainer.train_steps == 4
