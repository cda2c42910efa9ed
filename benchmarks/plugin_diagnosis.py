"""Diagnosis: what fine-tuning does to the PPM plug-in, what never-seen items get from the ID
side, and how much the head relies on each module for cold and warm items.

For each URM run (``urm``, ``urm_ppm_frozen``, ``urm_wo_ppm``, with any setting):

- **Plug-in movement**: ``||w_t - w_0|| / ||w_0||`` over the plug-in's trainable weights, for
  every checkpoint the run kept (``w_0``: the pre-trained PPM module of ``--ppm_run``), overall
  and for the variable that moved most. A run trained with a small
  ``trainer.checkpoint_interval`` and a large ``trainer.max_to_keep`` shows how fast it moves.
- **The unknown row**: the item-id embedding row that every id outside the vocabulary reads
  (row 0: new items, and ``model.id_dropout``'s dropped ids), its norm against the rows of the
  vocabulary's items by training count, and its cosine with their mean.
- **Reliance**: on the test split, each part of URM's representation (``id``: IDSM's
  ``[U_ID | I_ID]``; ``plugin``: ``[U_MO | I_MO]``; ``profile``: D) is replaced in turn by its
  mean over the batch; per bucket of target-item training count, the mean absolute change of
  the click logit and the click AUC that remains. A head that ignores the plug-in for a bucket
  barely moves when the plug-in is ablated there. Also the bucket's mean predicted click
  probability against its click rate (how the model scores items it has never seen).

Run (from the repository root)::

    .venv/bin/python benchmarks/plugin_diagnosis.py --ppm_run RUNS/ppm_pretrain \\
        --runs RUNS/urm_train_large RUNS/urm_ppm_frozen_train_large RUNS/urm_wo_ppm_train_large

Writes ``benchmarks/results/plugin_diagnosis.json`` and ``plugin_diagnosis_movement.png``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ppm  # noqa: E402,F401
from benchmarks import common  # noqa: E402

PARTS = ("id", "plugin", "profile")


def _trainable(module) -> list:
    """The plug-in's trained variables (the cache table is a constant)."""
    return [v for v in module.weights if v.trainable]


def _distance(now: list, start: list) -> tuple[float, str, float]:
    """(overall relative L2 distance, the variable that moved most, its relative distance)."""
    num = sum(float(np.sum((a - b) ** 2)) for a, b in zip(now, start))
    den = sum(float(np.sum(b ** 2)) for b in start)
    per = [float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))
           for a, b in zip(now, start)]
    k = int(np.argmax(per))
    return float(np.sqrt(num / max(den, 1e-12))), k, per[k]


def plugin_movement(model, run_dir: str, ppm_run: str) -> list[dict]:
    """``[{"step", "relative_l2", "most_moved", "most_moved_relative_l2"}]`` per checkpoint."""
    import tensorflow as tf

    from ppm import checkpoints

    module = model.plugin_module
    variables = _trainable(module)
    checkpoints.load_module(module, ppm_run, "ppm")
    start = [v.numpy() for v in variables]
    out = [{"step": 0, "relative_l2": 0.0, "most_moved": None, "most_moved_relative_l2": 0.0}]
    found = checkpoints.scan(os.path.join(run_dir, "checkpoints"))
    for prefix in found.readable:
        tf.train.Checkpoint(model=model).restore(prefix).expect_partial()
        rel, k, most = _distance([v.numpy() for v in variables], start)
        out.append({"step": int(re.search(r"-(\d+)$", prefix)[1]), "relative_l2": rel,
                    "most_moved": variables[k].name, "most_moved_relative_l2": most})
    return sorted(out, key=lambda r: r["step"])


def unknown_row(model, vocab_folder: str) -> dict:
    """The item-id table's unknown row against the vocabulary's rows by training count."""
    from ppm import metrics
    from ppm.models import factory

    table = model.idsm.embedders[0].embeddings[0]
    weights = table.embedding.embeddings.numpy()
    oov = weights[: table.num_oov_indices].mean(axis=0)
    known = weights[table.num_oov_indices:]
    counts = np.asarray(factory.read_item_counts(vocab_folder))
    if len(counts) != len(known):
        raise ValueError(f"{vocab_folder}/item_id.tsv holds {len(counts)} ids, the model's "
                         f"item table {len(known)}: not this run's vocabulary")
    out = {"unknown_norm": float(np.linalg.norm(oov)), "by_count": {}}
    for name, mask in metrics.bucket_masks(counts).items():
        if not mask.any():
            continue
        rows = known[mask]
        mean = rows.mean(axis=0)
        out["by_count"][name] = {
            "items": int(mask.sum()), "mean_norm": float(np.linalg.norm(rows, axis=1).mean()),
            "cosine_unknown_to_mean": float(oov @ mean / max(
                np.linalg.norm(oov) * np.linalg.norm(mean), 1e-12))}
    return out


def reliance(model, files, schema, batch_size: int) -> dict:
    """Per bucket of target-item training count: examples, clicks, click rate, mean predicted
    click probability, click AUC of the model and with each part mean-ablated, and the mean
    absolute change of the click logit under each ablation."""
    import tensorflow as tf

    from ppm import metrics
    from ppm.data import pipeline

    @tf.function(reduce_retracing=True)
    def logits(features):
        parts = model.representation_parts(features, training=False)
        out = {"full": model.mmoe(tf.concat(list(parts.values()), -1))["click"]}
        for name in parts:
            mean = tf.reduce_mean(parts[name], axis=0, keepdims=True)
            ablated = dict(parts, **{name: tf.broadcast_to(mean, tf.shape(parts[name]))})
            out[name] = model.mmoe(tf.concat(list(ablated.values()), -1))["click"]
        return out

    cols: dict = {}
    for features, labels in pipeline.make_dataset(files, schema, batch_size, training=False,
                                                  deterministic=True):
        for k, v in logits(features).items():
            cols.setdefault(k, []).append(v.numpy().reshape(-1))
        cols.setdefault("label", []).append(labels["click"].numpy().reshape(-1))
        cols.setdefault("freq", []).append(features["item_freq"].numpy().reshape(-1))
    cols = {k: np.concatenate(v) for k, v in cols.items()}
    parts = [p for p in PARTS if p in cols]
    out = {}
    for name, mask in {"all": np.ones_like(cols["label"], bool),
                       **metrics.bucket_masks(cols["freq"])}.items():
        y, full = cols["label"][mask], cols["full"][mask]
        row = {"examples": int(mask.sum()), "clicks": int(y.sum()),
               "click_rate": float(y.mean()) if mask.any() else None,
               "mean_p_click": float((1 / (1 + np.exp(-full))).mean()) if mask.any() else None,
               "auc": metrics.auc(y, full)}
        for p in parts:
            row[f"auc_without_{p}"] = metrics.auc(y, cols[p][mask])
            row[f"logit_change_without_{p}"] = float(np.abs(cols[p][mask] - full).mean()) \
                if mask.any() else None
        out[name] = row
    return out


def diagnose(run_dir: str, ppm_run: str, split: str = "test") -> dict:
    from ppm import evaluate
    from ppm.data import pipeline

    model, inputs, config = evaluate.load_model(run_dir)
    if config.model.type != "urm":
        raise ValueError(f"{run_dir}: a {config.model.type} run; the diagnosis reads URM's "
                         "modules")
    files = pipeline.list_files(os.path.join(config.data.examples, split))
    result = {"run": run_dir, "plugin": config.model.plugin.describe(),
              "id_dropout": config.model.id_dropout,
              "frequency_gate": config.model.frequency_gate,
              "unknown_row": unknown_row(model, os.path.join(config.data.examples, "vocab")),
              "reliance": reliance(model, files, inputs.schema, config.trainer.eval_batch_size)}
    if model.plugin_module is not None and config.model.plugin.init != "random":
        # last: it restores every checkpoint in turn, ending at the latest
        result["movement"] = plugin_movement(model, run_dir, ppm_run)
    return result


def _f(v, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _ablated(row: dict, part: str) -> str:
    if f"auc_without_{part}" not in row:
        return "-"
    return f"{_f(row[f'logit_change_without_{part}'], 2)}, {_f(row[f'auc_without_{part}'])}"


def tables(results: list[dict]) -> str:
    lines = ["## Plug-in movement (relative L2 distance to the pre-trained weights)", "",
             "| run | step | relative L2 | most moved variable (its relative L2) |",
             "|---|---|---|---|"]
    for r in results:
        for m in r.get("movement", [])[1:]:
            lines.append(f"| {r['label']} | {m['step']} | {m['relative_l2']:.4f} | "
                         f"{m['most_moved']} ({m['most_moved_relative_l2']:.3f}) |")
    lines += ["", "## The unknown item row", "",
              "| run | unknown row norm | " + " | ".join(
                  f"{b}: items, mean norm, cos" for b in results[0]["unknown_row"]["by_count"])
              + " |", "|---|---|" + "---|" * len(results[0]["unknown_row"]["by_count"])]
    for r in results:
        u = r["unknown_row"]
        lines.append(f"| {r['label']} | {u['unknown_norm']:.3f} | " + " | ".join(
            f"{v['items']}, {v['mean_norm']:.3f}, {v['cosine_unknown_to_mean']:+.2f}"
            for v in u["by_count"].values()) + " |")
    lines += ["", "## Reliance by bucket (click; mean |logit change| when a part is replaced "
              "by its batch mean, and the AUC left)", "",
              "| run | bucket | examples / clicks | click rate / mean p | AUC | "
              "without id: change, AUC | without plugin: change, AUC |",
              "|---|---|---|---|---|---|---|"]
    for r in results:
        for b, v in r["reliance"].items():
            lines.append(f"| {r['label']} | {b} | {v['examples']} / {v['clicks']} | "
                         f"{_f(v['click_rate'])} / {_f(v['mean_p_click'])} | {_f(v['auc'])} | "
                         f"{_ablated(v, 'id')} | {_ablated(v, 'plugin')} |")
    return "\n".join(lines)


def plot(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        m = r.get("movement")
        if m and len(m) > 1:
            ax.plot([x["step"] for x in m], [x["relative_l2"] for x in m], marker="o",
                    label=r["label"])
    ax.set_xlabel("training step")
    ax.set_ylabel("plug-in: ||w - w_pretrained|| / ||w_pretrained||")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, help="URM run folders.")
    parser.add_argument("--labels", nargs="*", default=[],
                        help="A label per run (default: the folder names).")
    parser.add_argument("--ppm_run", required=True,
                        help="The ppm_pretrain run the plug-ins were loaded from.")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", default=common.result_path("plugin_diagnosis"))
    args = parser.parse_args(argv)
    if args.labels and len(args.labels) != len(args.runs):
        parser.error(f"{len(args.labels)} --labels for {len(args.runs)} --runs")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    results = []
    for k, run in enumerate(args.runs):
        r = diagnose(run, args.ppm_run, args.split)
        r["label"] = args.labels[k] if args.labels else os.path.basename(os.path.normpath(run))
        results.append(r)
    out = {"ppm_run": args.ppm_run, "split": args.split, "runs": results,
           "machine": common.machine(), "tables": tables(results)}
    common.write_result(args.out, out)
    plot(results, args.out.replace(".json", "_movement.png"))
    print(out["tables"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
