"""Evaluate a training run: ``python -m ppm.evaluate --run DIR [--split test]``.

Scores every example of a window with the run's latest checkpoint and reports, per task, AUC,
GAUC (grouped by user), logloss, P@2 over each request's candidates (PPM Table 2) and AUC by
target-item training-frequency bucket (the cold-start analysis, PPM Fig. 2). On a synthetic
world (events with ``true_p_*`` columns) it also reports the oracle: the same metrics computed
from the true probabilities, the best any model can reach on these labels. Results go to
``<run>/metrics_<split>.json`` (and ``metrics.json`` for the default split) and a table.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import numpy as np
import tensorflow as tf

from ppm import checkpoints, configs, metrics
from ppm.data import canonical, pipeline
from ppm.models import factory

logger = logging.getLogger(__name__)
META = ("request_id", "user_id", "item_id", "item_freq")


def load_model(run_dir: str, config=None):
    """Rebuilds the run's model and restores its latest checkpoint (no optimizer)."""
    config = config or configs.read_run_config(run_dir)
    inputs = factory.load_inputs(config, run_dir=run_dir)
    model = factory.build_model(config, inputs)
    model(factory.dummy_features(inputs.schema))
    ckpt = checkpoints.latest(run_dir)
    tf.train.Checkpoint(model=model).restore(ckpt).expect_partial() \
        .assert_existing_objects_matched()
    return model, inputs, config


def score(model, files, schema, batch_size: int, progress: bool = True) -> dict:
    """Probabilities, labels and identifiers of every example in ``files`` (NumPy arrays)."""
    ds = pipeline.make_dataset(files, schema, batch_size, training=False, deterministic=True)
    predict = tf.function(lambda f: model.probabilities(f, training=False))
    parts: dict = {}
    batches = ds
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(ds, desc="scoring", unit="batch", leave=False)
    for feats, labels in batches:
        out = {f"p_{k}": v for k, v in predict(feats).items()}
        out.update({f"label_{k}": v for k, v in labels.items()})
        out.update({k: feats[k] for k in META})
        for k, v in out.items():
            parts.setdefault(k, []).append(v.numpy())
    if not parts:
        raise ValueError(f"no example in {files}")
    result = {k: np.concatenate(v) for k, v in parts.items()}
    for k in ("request_id", "user_id", "item_id"):
        result[k] = result[k].astype(str)
    return result


def oracle_scores(dataset: str, window, scored: dict, tasks) -> dict | None:
    """True probabilities aligned with ``scored`` (synthetic worlds only), or None."""
    path = os.path.join(dataset, "events.parquet")
    if not dataset or not os.path.exists(path):
        return None
    names = canonical.read_parquet_schema(path).names
    cols = [f"true_p_{t}" for t in tasks]
    if not all(c in names for c in cols):
        return None
    import pandas as pd

    events = canonical.read_parquet(path, columns=["request_id", "item_id", "ts"] + cols) \
        .to_pandas()
    events = events[(events.ts >= window.start) & (events.ts < window.end)]
    keyed = pd.DataFrame({"request_id": scored["request_id"], "item_id": scored["item_id"]})
    merged = keyed.merge(events.drop(columns="ts").drop_duplicates(["request_id", "item_id"]),
                         on=["request_id", "item_id"], how="left")
    if merged[cols].isna().any().any():
        logger.warning("the oracle is missing for %d examples; skipped",
                       int(merged[cols].isna().any(axis=1).sum()))
        return None
    return {t: merged[f"true_p_{t}"].to_numpy() for t in tasks}


def evaluate_run(run_dir: str, split: str | None = None, progress: bool = True) -> dict:
    """Scores ``split`` (default: the config's eval window) and writes the metrics JSON."""
    model, inputs, config = load_model(run_dir)
    split = split or config.data.eval_window
    if split not in canonical.WINDOW_NAMES:
        raise ValueError(f"unknown split {split!r}; one of {canonical.WINDOW_NAMES}")
    files = pipeline.list_files(os.path.join(config.data.examples, split))
    scored = score(model, files, inputs.schema, config.trainer.eval_batch_size, progress)
    tasks = model.task_names
    result = {"run": run_dir, "split": split, "examples": len(scored["request_id"]),
              "model": config.model.name, "ppm_init": config.model.ppm_init,
              "checkpoint": checkpoints.latest(run_dir), "tasks": {}, "oracle": None}
    for t in tasks:
        result["tasks"][t] = metrics.task_metrics(
            scored[f"label_{t}"], scored[f"p_{t}"], scored["user_id"], scored["request_id"],
            scored["item_freq"])
    dataset = config.data.dataset
    if dataset and os.path.exists(os.path.join(dataset, canonical.DATASET_FILE)):
        window = canonical.read_meta(dataset).window(split)
        oracle = oracle_scores(dataset, window, scored, tasks)
        if oracle is not None:
            result["oracle"] = {t: metrics.task_metrics(
                scored[f"label_{t}"], oracle[t], scored["user_id"], scored["request_id"],
                scored["item_freq"]) for t in tasks}
    names = [f"metrics_{split}.json"] + (["metrics.json"] if split == config.data.eval_window
                                         else [])
    for name in names:
        canonical.write_json(os.path.join(run_dir, name), result)
    return result


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def format_table(result: dict) -> str:
    """A plain-text table of a :func:`evaluate_run` result."""
    lines = [f"{result['model']} ({result['ppm_init']}) on {result['split']}: "
             f"{result['examples']:,} examples",
             f"  {'task':<7}{'AUC':>8}{'GAUC':>8}{'P@2':>8}{'logloss':>9}{'positives':>10}"
             f"{'oracle AUC':>12}"]
    for t, m in result["tasks"].items():
        o = (result["oracle"] or {}).get(t, {}).get("auc")
        lines.append(f"  {t:<7}{_fmt(m['auc']):>8}{_fmt(m['gauc']):>8}{_fmt(m['p@2']):>8}"
                     f"{_fmt(m['logloss']):>9}{m['positives']:>10,}{_fmt(o):>12}")
    lines.append("  AUC by target-item frequency in train_large (click):")
    buckets = result["tasks"][next(iter(result["tasks"]))]["auc_by_frequency"]
    lines.append("    " + "  ".join(f"{b}: {_fmt(v['auc'])} ({v['examples']:,})"
                                    for b, v in buckets.items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ppm.evaluate", description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="A run folder of python -m ppm.train.")
    parser.add_argument("--split", default=None, choices=canonical.WINDOW_NAMES,
                        help="Example window to score (default: the run's data.eval_window).")
    parser.add_argument("--no_progress", action="store_true", help="No progress bar.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = evaluate_run(args.run, args.split, progress=not args.no_progress)
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
