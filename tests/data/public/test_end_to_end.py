"""A converted public dataset runs through the Beam example builder and a tiny training run."""

import os

import numpy as np

from ppm import configs, evaluate, train
from ppm.data import validate
from ppm.data.public import movielens
from tests.conftest import write_fake_cache
from tests.data.public.test_movielens import DAY, T0


def _write_random_100k(root, users=40, movies=60, days=16, seed=0):
    """A MovieLens-100K-formatted folder with a few hundred ratings (popular movies rated more)."""
    rng = np.random.default_rng(seed)
    os.makedirs(root)
    popularity = rng.zipf(1.6, movies).astype(float)
    popularity /= popularity.sum()
    lines = set()
    for u in range(1, users + 1):
        for d in rng.choice(days, size=6, replace=False):
            for m in rng.choice(movies, size=rng.integers(1, 4), replace=False, p=popularity):
                ts = T0 + d * DAY + rng.integers(0, DAY)
                lines.add(f"{u}\t{m + 1}\t{rng.integers(1, 6)}\t{ts}")
    with open(os.path.join(root, "u.data"), "w") as f:
        f.write("\n".join(sorted(lines)) + "\n")
    genres = ["0"] * 19
    with open(os.path.join(root, "u.item"), "wb") as f:
        for m in range(1, movies + 1):
            g = list(genres)
            g[1 + m % 18] = "1"
            f.write(f"{m}|Film {m} ({1950 + m})|01-Jan-{1950 + m}||url|{'|'.join(g)}\n"
                    .encode("latin-1"))
    with open(os.path.join(root, "u.user"), "w") as f:
        for u in range(1, users + 1):
            f.write(f"{u}|{15 + u}|{'MF'[u % 2]}|other|00000\n")
    return str(root)


def test_movielens_through_build_examples_and_training(tmp_path):
    from beam_jobs import build_examples

    dataset = str(tmp_path / "dataset")
    movielens.convert(_write_random_100k(tmp_path / "ml-100k"), dataset)
    assert validate.validate(dataset).ok
    examples = str(tmp_path / "examples")
    stats = build_examples.run(["--dataset", dataset, "--out", examples, "--num_shards", "2",
                                "--max_history", "8"])
    assert all(stats["windows"][w]["examples"] > 0 for w in ("pretrain", "train_large", "test"))
    assert stats["dataset_tasks"] == ["click", "order"]
    cache = write_fake_cache(dataset, str(tmp_path / "cache"))
    config = configs.resolve("urm_ppm_random", "tiny", validate=False)
    config.override({"data": {"dataset": dataset, "examples": examples, "embeddings": cache}})
    run = str(tmp_path / "urm")
    summary = train.train(config, run, verbose=0)
    assert summary["steps"] > 0
    # MovieLens has no add-to-cart label (dataset.json tasks): the model learns click and order.
    assert list(configs.read_run_config(run).model.tasks) == ["click", "order"]
    result = evaluate.evaluate_run(run, "test", progress=False)
    assert sorted(result["tasks"]) == ["click", "order"]
    # Every test example scored, with its own labels.
    assert result["examples"] == stats["windows"]["test"]["examples"]
    for t in ("click", "order"):
        assert result["tasks"][t]["positives"] == stats["windows"]["test"][t] > 0
    # MovieLens displayed nothing: every position is the serving default, so the offline
    # metrics are the ones serving gets, and there is no position-only baseline to report.
    assert result["positions"] == "none"
    for t in ("click", "order"):
        assert result["at_serving_position"]["tasks"][t]["auc"] == result["tasks"][t]["auc"]
    assert result["position_baseline"]["tasks"] is None
    assert "no positions" in evaluate.format_table(result)


def test_training_drops_tasks_the_dataset_lacks(tmp_path):
    import pytest

    from ppm.data import canonical

    meta = canonical.DatasetMeta(name="d", source="test", windows={}, tasks=["click"])
    canonical.write_meta(str(tmp_path), meta)
    config = configs.resolve("urm", "tiny", validate=False)
    config.override({"data": {"dataset": str(tmp_path)},
                     "model": {"task_weights": [2.0, 1.0, 0.5]}})
    assert train.restrict_to_dataset_tasks(config) == ["order", "cart"]
    assert list(config.model.tasks) == ["click"] and list(config.model.task_weights) == [2.0]
    assert train.restrict_to_dataset_tasks(config) == []  # nothing left to drop
    config.override({"model": {"tasks": ["order"], "task_weights": []}})
    with pytest.raises(ValueError, match="has only"):
        train.restrict_to_dataset_tasks(config)
    # The examples' stats.json (what training reads) wins over a missing or other dataset.
    examples = tmp_path / "examples"
    examples.mkdir()
    (examples / "stats.json").write_text('{"dataset_tasks": ["click", "order"]}')
    config = configs.resolve("urm", "tiny", validate=False)
    config.override({"data": {"dataset": str(tmp_path / "nowhere"), "examples": str(examples)}})
    assert train.restrict_to_dataset_tasks(config) == ["cart"]
    config = configs.resolve("urm", "tiny", validate=False)
    config.override({"data": {"dataset": str(tmp_path / "nowhere"),
                              "examples": str(tmp_path / "none")}})
    assert train.restrict_to_dataset_tasks(config) == []  # nothing says: all three kept
