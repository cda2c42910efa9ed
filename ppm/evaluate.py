"""Evaluate a training run: ``python -m ppm.evaluate --run DIR [--split test]``.

Scores every example of a window with the run's latest checkpoint and reports, per task, AUC,
GAUC (grouped by user), logloss, P@2 over each request's candidates (PPM Table 2) and AUC by
target-item training-frequency bucket (the cold-start analysis, PPM Fig. 2). On a synthetic
world (events with ``true_p_*`` columns) it also reports the oracle: the same metrics computed
from the true probabilities, the best any model can reach on these labels. Results go to
``<run>/metrics_<split>.json`` (and ``metrics.json`` for the default split) and a table.

Beside the model's metrics (every example scored at its logged ``position``), two rows:

- **at serving position**: the same metrics with every ``position`` set to the serving
  client's default (0, :data:`ppm.serving.client.DEFAULT_POSITION`): a ranker does not know
  where a candidate will be shown, so this is the AUC serving computes. On data whose
  positions were displayed, the gap between the two rows is what the model takes from
  position.
- **position only**: the score ``-position`` (earlier slots first), AUC, GAUC and P@2 per task:
  how much of the labels position alone explains (on a logged feed, position bias). On data
  without display positions (``dataset.json`` ``positions: "none"``, or every example at one
  position) it says "no positions" instead of a number.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import numpy as np
import tensorflow as tf

from ppm import checkpoints, configs, features, metrics
from ppm.data import canonical, pipeline
from ppm.models import factory

logger = logging.getLogger(__name__)
META = ("request_id", "user_id", "item_id", "item_freq", "position", "rank")
# Search examples (GRACE) also keep how each candidate was exposed (Recall@k, long tail).
SEARCH_META = ("exposure",)
BOOTSTRAP_SEED = 0


def write_scores(run_dir: str, split: str, scored: dict, tasks) -> str:
    """Writes ``<run>/scores_<split>.npz`` (labels, probabilities, users, requests, item
    frequencies of every example, in example order) for paired comparisons of two runs on the
    same examples (``benchmarks/table3.py``); returns its path."""
    path = os.path.join(run_dir, f"scores_{split}.npz")
    keep = [f"p_{t}" for t in tasks] + [f"label_{t}" for t in tasks] + [
        k for k in META + SEARCH_META if k in scored]
    np.savez_compressed(path, **{k: scored[k] for k in keep})
    return path


def read_scores(path: str) -> dict:
    """The arrays :func:`write_scores` wrote."""
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def load_model(run_dir: str, config=None, embeddings: str | None = None):
    """Rebuilds the run's model and restores its latest checkpoint (no optimizer).

    Args:
      embeddings: another version of the run's embedding cache (``beam_jobs.embed_items
        --parent``, the same encoders): the model reads its table, every trained weight comes
        from the checkpoint. New items get their real vectors without retraining (Taobao
        §5); the vectors of the items the run knew are the same in both versions.

    Returns:
      ``(model, inputs, config)``.
    """
    config = config or configs.read_run_config(run_dir)
    versioned = bool(embeddings) and embeddings != config.data.embeddings
    if versioned:
        config.override({"data": {"embeddings": embeddings}})
    inputs = factory.load_inputs(config, run_dir=run_dir, cache_version=versioned)
    model = factory.build_model(config, inputs)
    dummy = factory.dummy_features(inputs.schema)
    model(dummy)
    if versioned:  # the checkpoint's table has other rows: copy the weights around it
        template = factory.build_model(config, factory.template_inputs(inputs, run_dir))
        template(dummy)
        checkpoints.warm_start(model, template, run_dir)
    else:
        tf.train.Checkpoint(model=model).restore(checkpoints.latest(run_dir)).expect_partial() \
            .assert_existing_objects_matched()
    return model, inputs, config


def score(model, files, schema, batch_size: int, progress: bool = True,
          serving_position: int | None = None) -> dict:
    """Probabilities, labels and identifiers of every example in ``files`` (NumPy arrays).

    Args:
      serving_position: also score every example with ``position`` set to this value: keys
        ``served_p_<task>`` (batches already all at this position are not scored twice).

    Returns:
      ``p_<task>``, ``label_<task>``, :data:`META` columns (and ``served_p_<task>``), [N] each.
    """
    ds = pipeline.make_dataset(files, schema, batch_size, training=False, deterministic=True)
    predict = tf.function(lambda f: model.probabilities(f, training=False))
    parts: dict = {}
    batches = ds
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(ds, desc="scoring", unit="batch", leave=False)
    for feats, labels in batches:
        out = {f"p_{k}": v for k, v in predict(feats).items()}
        if serving_position is not None:
            pos = feats["position"]
            served = out if bool(tf.reduce_all(pos == serving_position)) else {
                f"p_{k}": v for k, v in predict(
                    dict(feats, position=tf.fill(tf.shape(pos), tf.cast(serving_position,
                                                                         pos.dtype)))).items()}
            out.update({f"served_{k}": v for k, v in served.items()})
        labels = features.derived_labels(model.task_names, feats, labels)
        out.update({f"label_{k}": v for k, v in labels.items()})
        out.update({k: feats[k] for k in META + SEARCH_META if k in feats})
        for k, v in out.items():
            parts.setdefault(k, []).append(v.numpy())
    if not parts:
        raise ValueError(f"no example in {files}")
    result = {k: np.concatenate(v) for k, v in parts.items()}
    for k in ("request_id", "user_id", "item_id") + SEARCH_META:
        if k in result:
            result[k] = result[k].astype(str)
    return result


def oracle_scores(dataset: str, window, scored: dict, tasks) -> dict | None:
    """True probabilities aligned with ``scored`` (synthetic worlds only), for the tasks the
    world has them for (not the derived ``top<k>`` tasks), or None."""
    path = os.path.join(dataset, "events.parquet")
    if not dataset or not os.path.exists(path):
        return None
    names = canonical.read_parquet_schema(path).names
    tasks = [t for t in tasks if f"true_p_{t}" in names]  # derived tasks (top<k>) have none
    cols = [f"true_p_{t}" for t in tasks]
    if not cols:
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


def position_baseline(scored: dict, tasks, positions: str | None = None) -> dict:
    """Metrics of the score ``-position`` per task (module docstring).

    Args:
      scored: :func:`score`'s arrays (``label_<task>``, ``position``, ``user_id``,
        ``request_id``).
      tasks: task names.
      positions: ``dataset.json``'s ``positions`` (``"displayed"``, ``"none"``), if known.

    Returns:
      ``{"score": "-position", "tasks": {task: {"auc", "gauc", "p@2", "logloss": None,
      "positives"}}}``, or ``"tasks": None`` and a ``"note"`` when there are no positions.
    """
    out = {"score": "-position"}
    position = np.asarray(scored["position"])
    if positions == "none":
        return {**out, "tasks": None, "note": "no positions: dataset.json says positions: none "
                "(nothing was displayed in a known order; every position is 0)"}
    if "exposure" in scored:
        return {**out, "tasks": None, "note": "not computed: a search log's position is the "
                "ranking model's order (rank) for every candidate, which a pre-ranking model "
                "cannot see; it would separate displayed from hidden candidates exactly"}
    if len(np.unique(position)) < 2:
        return {**out, "tasks": None, "note": "no positions: every example has position "
                f"{int(position[0]) if len(position) else 0}"}
    s = -position.astype(np.float64)
    out["tasks"] = {t: {
        "auc": metrics.auc(scored[f"label_{t}"], s),
        "gauc": metrics.gauc(scored[f"label_{t}"], s, scored["user_id"]),
        "p@2": metrics.precision_at_n(scored[f"label_{t}"], s, scored["request_id"], 2),
        "logloss": None,  # a rank, not a probability
        "positives": int((np.asarray(scored[f"label_{t}"]) > .5).sum())} for t in tasks}
    return out


def evaluate_run(run_dir: str, split: str | None = None, progress: bool = True) -> dict:
    """Scores ``split`` (default: the config's eval window) and writes the metrics JSON.

    Besides ``tasks`` (the model at the logged positions) and ``oracle``, the result holds
    ``at_serving_position`` (``{"position", "tasks"}``: every position set to the serving
    default), ``position_baseline`` (:func:`position_baseline`) and ``positions`` (the
    dataset's, or None when no ``dataset.json`` is at hand).
    """
    from ppm.serving.client import DEFAULT_POSITION  # noqa: PLC0415 - gRPC only when evaluating

    model, inputs, config = load_model(run_dir)
    split = split or config.data.eval_window
    if split not in canonical.WINDOW_NAMES:
        raise ValueError(f"unknown split {split!r}; one of {canonical.WINDOW_NAMES}")
    files = pipeline.list_files(os.path.join(config.data.examples, split))
    scored = score(model, files, inputs.schema, config.trainer.eval_batch_size, progress,
                   serving_position=DEFAULT_POSITION)
    # The distillation task's label is a score, not an event: it is not evaluated.
    tasks = [t for t in model.task_names if t != features.RANKER_SCORE]
    # One draw of users for every row (and, by its fixed seed, for every run scored on the
    # same examples), so the error bars of two models are comparable.
    boot = metrics.Bootstrap(scored["user_id"], seed=BOOTSTRAP_SEED)
    dataset = config.data.dataset
    meta = None
    if dataset and os.path.exists(os.path.join(dataset, canonical.DATASET_FILE)):
        meta = canonical.read_meta(dataset)
    result = {"run": run_dir, "split": split, "examples": len(scored["request_id"]),
              "model": config.model.type, "plugin": config.model.plugin.describe(),
              "checkpoint": checkpoints.latest(run_dir), "tasks": {}, "oracle": None,
              "positions": meta.positions if meta is not None else None,
              "at_serving_position": {"position": DEFAULT_POSITION, "tasks": {}}}
    for t in tasks:
        for key, into in ((f"p_{t}", result["tasks"]),
                          (f"served_p_{t}", result["at_serving_position"]["tasks"])):
            into[t] = metrics.task_metrics(
                scored[f"label_{t}"], scored[key], scored["user_id"], scored["request_id"],
                scored["item_freq"], bootstrap=boot)
    result["position_baseline"] = position_baseline(scored, tasks, result["positions"])
    if meta is not None:
        window = meta.window(split)
        oracle = oracle_scores(dataset, window, scored, tasks)
        if oracle is not None:
            result["oracle"] = {t: metrics.task_metrics(
                scored[f"label_{t}"], oracle[t], scored["user_id"], scored["request_id"],
                scored["item_freq"], bootstrap=boot) for t in tasks if t in oracle}
    result["bootstrap"] = {"over": "users", "replicates": len(boot.counts),
                           "seed": BOOTSTRAP_SEED}
    result["scores"] = write_scores(run_dir, split, scored, tasks)
    names = [f"metrics_{split}.json"] + (["metrics.json"] if split == config.data.eval_window
                                         else [])
    for name in names:
        canonical.write_json(os.path.join(run_dir, name), result)
    return result


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def format_table(result: dict) -> str:
    """A plain-text table of a :func:`evaluate_run` result: per task the model at the logged
    positions, at the serving position and the position-only baseline."""
    positions = result.get("positions")
    plugin = result.get("plugin") or result.get("ppm_init", "none")  # older metrics files
    lines = [f"{result['model']} (plug-in {plugin}) on {result['split']}: "
             f"{result['examples']:,} examples"
             + (f"; positions: {positions}" if positions else ""),
             f"  {'task':<7}{'scores':<18}{'AUC (± SE)':>16}{'GAUC':>8}{'P@2':>8}{'logloss':>9}"
             f"{'positives':>10}{'oracle AUC':>12}"]
    served = result.get("at_serving_position") or {}
    baseline = result.get("position_baseline") or {}

    def row(t, name, m, oracle=None):
        return (f"  {t:<7}{name:<18}{_auc(m):>16}{_fmt(m['gauc']):>8}"
                f"{_fmt(m['p@2']):>8}{_fmt(m['logloss']):>9}{m['positives']:>10,}"
                f"{_fmt(oracle):>12}")

    for t, m in result["tasks"].items():
        lines.append(row(t, "model", m, (result["oracle"] or {}).get(t, {}).get("auc")))
        if t in served.get("tasks", {}):
            lines.append(row(t, f"at position {served['position']}", served["tasks"][t]))
        if (baseline.get("tasks") or {}).get(t):
            lines.append(row(t, "position only", baseline["tasks"][t]))
    if baseline.get("note"):
        lines.append(f"  position only: {baseline['note']}")
    first = next(iter(result["tasks"]))
    lines.append(f"  AUC (± SE) by target-item frequency in train_large ({first}):")
    buckets = result["tasks"][first]["auc_by_frequency"]
    for b, v in buckets.items():
        few = few_positives(v)
        lines.append(f"    seen {b + 'x':<7}{_auc(v):>16}  {v['examples']:>9,} examples "
                     f"{v['positives']:>7,} positives" + (f"  ({few})" if few else ""))
    if result.get("bootstrap"):
        lines.append(f"  SE: bootstrap over {result['bootstrap']['over']} "
                     f"({result['bootstrap']['replicates']} replicates)")
    return "\n".join(lines)


def _auc(m: dict) -> str:
    se = m.get("auc_se")
    return _fmt(m["auc"]) + (f" ± {se:.4f}" if se is not None else "")


def few_positives(bucket: dict, minimum: int = metrics.MIN_POSITIVES) -> str | None:
    """A warning when a bucket holds too few positives or negatives to read its AUC."""
    pos, neg = bucket["positives"], bucket["examples"] - bucket["positives"]
    if min(pos, neg) >= minimum:
        return None
    return (f"too few to read: {min(pos, neg)} {'positives' if pos <= neg else 'negatives'}"
            f" < {minimum}")


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
