"""Benchmark: Taobao's integration methods on the ID-based model, on a synthetic world.

The analogues of "Enhancing Taobao Display Advertising with Multimodal Representations"
(arXiv:2407.19467) §6.3, each a ``--parts`` choice:

- ``table3`` (Table 3): the ID-based model (the zoo's DIN), Vector, SimScore, SimTier, MAKE
  and SimTier + MAKE, each one pass over ``train_large`` (MAKE pre-trained ``make_pretrain``,
  ``--make_passes`` passes, per seed, then fine-tuned as the experiments do): click GAUC and
  AUC, their improvement over the ID model, and the paired user-bootstrap error of each
  AUC difference on the same test examples;
- ``fig6b`` (Fig. 6(b), from ``table3``'s runs): the test items in 8 groups of equal size by
  their training frequency, the relative AUC and logloss improvement of SimTier + MAKE over the
  ID model per group;
- ``fig6c`` (Fig. 6(c)): MAKE pre-trained for 0, 1, 2, 4, 8 passes (``--make_epochs``; 0: the
  plug-in jointly trained from scratch), then DIN + MAKE: click GAUC and AUC. One
  ``make_pretrain`` run of the largest count, a checkpoint after every pass (its learning
  rate decays over all of them); each count plugs in its checkpoint;
- ``fig3`` (Fig. 3): the ID model (DIN) and the multimodal-only model (MAKE's CTR model, no
  ID) trained ``--fig3_passes`` passes over ``train_large``, test GAUC after each pass (a
  checkpoint per pass of one run whose learning rate decays over all of them);
- ``fig6a`` (Fig. 6(a)): encoders of different quality (``--encoders LABEL=DIR``, e.g. the
  rows of ``benchmarks/encoder_ablation.py``), each embedded into a cache of its own, then
  SimTier + MAKE on it: the encoder's held-out Acc@1 (its ``encoder.json``) against the click
  GAUC gain over the ID model.

The paper's directions are the hypotheses under test (SimTier and MAKE beat Vector and
SimScore, their combination is best, the gain is largest on rare items, more MAKE pre-training
helps, the ID model peaks after one pass while the multimodal one keeps improving); the script
reports what it measures. Run (the folder holds ``dataset/``, ``examples/`` and an
``embeddings/`` cache, e.g. of an SCL image encoder; docs/benchmarks.md gives the commands)::

    .venv/bin/python benchmarks/taobao.py --run_root W --seeds 0 1 --parts table3 fig6b

Writes ``benchmarks/results/taobao.json`` and a PNG per figure (``taobao_fig3.png``,
``taobao_fig6b.png``, ``taobao_fig6c.png``); runs go to ``<run_root>/taobao/``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import ppm  # noqa: E402,F401
from benchmarks import common  # noqa: E402
from benchmarks.table3 import parse_variant  # noqa: E402

ROWS = (("ID-based (DIN)", "din"), ("Vector", "din_vector"), ("SimScore", "din_simscore"),
        ("SimTier", "din_simtier"), ("MAKE", "din_make"), ("SimTier + MAKE", "din_simtier_make"))
REFERENCE = ROWS[0][0]
PARTS = ("table3", "fig6b", "fig6c", "fig3", "fig6a")
GROUPS = 8


def config(experiment: str, args, seed: int, **override):
    """The registered experiment on ``--run_root``'s folders, for ``seed``."""
    from ppm import configs

    c = configs.resolve(experiment, args.preset, validate=False)
    c.override({"data": {**configs.data_paths(args.run_root), "seed": seed},
                "model": {"multimodal": {"modality": args.modality}}})
    if override:
        c.override(override)
    return c


def steps_per_pass(c) -> int:
    from ppm import train

    return math.ceil(train.window_examples(c) / c.data.global_batch_size)


def train_once(c, run_dir: str, verbose: int) -> str:
    """Trains ``c`` into ``run_dir`` unless a finished run is there (resumes otherwise)."""
    from ppm import train

    if not os.path.exists(os.path.join(run_dir, train.SUMMARY_FILE)):
        c.validate()
        train.train(c, run_dir, verbose=verbose)
    return run_dir


def snapshot_run(c, run_dir: str, passes: int, verbose: int) -> list[str]:
    """Trains ``passes`` passes with a checkpoint after each; returns their paths in order."""
    import tensorflow as tf

    n = steps_per_pass(c)
    c.override({"trainer": {"train_passes": 0.0, "train_steps": passes * n,
                            "checkpoint_interval": n, "max_to_keep": passes + 1}})
    train_once(c, run_dir, verbose)
    state = tf.train.get_checkpoint_state(os.path.join(run_dir, "checkpoints"))
    paths = list(state.all_model_checkpoint_paths)
    by_step = {int(p.rsplit("-", 1)[1]): p for p in paths}
    return [by_step[k * n] for k in range(1, passes + 1)]


def checkpoint_metrics(run_dir: str, checkpoint: str | None = None) -> dict:
    """Click AUC, GAUC and logloss on the test window of ``run_dir``'s model at
    ``checkpoint`` (default: its latest), and the AUC in each item-frequency group
    (:func:`frequency_groups`)."""
    import tensorflow as tf

    from ppm import evaluate, metrics
    from ppm.data import pipeline

    model, inputs, c = evaluate.load_model(run_dir)  # at the latest checkpoint
    if checkpoint is not None:
        tf.train.Checkpoint(model=model).restore(checkpoint).expect_partial()
    files = pipeline.list_files(os.path.join(c.data.examples, "test"))
    s = evaluate.score(model, files, inputs.schema, c.trainer.eval_batch_size, progress=False)
    m = metrics.task_metrics(s["label_click"], s["p_click"], s["user_id"], s["request_id"],
                             s["item_freq"])
    groups = frequency_groups(s["item_id"], s["item_freq"])
    by_group = [metrics.auc(s["label_click"][groups == g], s["p_click"][groups == g])
                for g in range(GROUPS)]
    return {"auc": m["auc"], "gauc": m["gauc"], "logloss": m["logloss"],
            "auc_by_group": by_group}


def run_table3(args, results: dict) -> None:
    from official.modeling import hyperparams

    from ppm import evaluate

    for seed in args.seeds:
        out = os.path.join(args.work_dir, f"seed{seed}")
        make = train_once(config("make_pretrain", args, seed,
                                 trainer={"train_passes": args.make_passes}),
                          os.path.join(out, "make_pretrain"), args.verbose)
        results["rows"].append({"label": "MAKE alone (no ID, pre-training)", "seed": seed,
                                "experiment": "make_pretrain",
                                "metrics": evaluate.evaluate_run(make, "test", progress=False)})
        for label, experiment, overrides in [(*r, "") for r in ROWS] + [
                v[:2] + v[3:] for v in args.variant]:
            c = config(experiment, args, seed)
            if overrides:
                c = hyperparams.override_params_dict(c, overrides, is_strict=True)
            if c.model.plugin.kind == "make":
                c.override({"model": {"plugin": {"checkpoint": make}}})
            run_dir = train_once(c, os.path.join(out, experiment + (
                "_" + "".join(ch if ch.isalnum() else "_" for ch in overrides)
                if overrides else "")), args.verbose)
            m = evaluate.evaluate_run(run_dir, "test", progress=False)
            results["rows"].append({"label": label, "seed": seed, "experiment": experiment,
                                    "metrics": m})
            logging.info("%s (seed %d): click AUC %.4f, GAUC %.4f", label, seed,
                         m["tasks"]["click"]["auc"], m["tasks"]["click"]["gauc"])


def table3(results: dict) -> str:
    """Markdown: click GAUC and AUC (mean ± std over seeds), and the improvement over the ID
    model (mean over seeds ± the paired bootstrap SE of the AUC difference)."""
    from benchmarks.table3 import paired_differences

    diffs = paired_differences(results, reference=REFERENCE)
    labels = list(dict.fromkeys(r["label"] for r in results["rows"]))
    ref = {r["seed"]: r["metrics"]["tasks"]["click"] for r in results["rows"]
           if r["label"] == REFERENCE}
    lines = ["| method | click GAUC | click AUC | GAUC − ID | AUC − ID (± paired SE) |",
             "|---|---|---|---|---|"]
    for label in labels:
        rows = [r for r in results["rows"] if r["label"] == label]
        gauc = [r["metrics"]["tasks"]["click"]["gauc"] for r in rows]
        auc = [r["metrics"]["tasks"]["click"]["auc"] for r in rows]
        dg = [r["metrics"]["tasks"]["click"]["gauc"] - ref[r["seed"]]["gauc"] for r in rows
              if r["seed"] in ref]
        d = diffs.get(label, {}).get("all")
        gain = "- | -" if label == REFERENCE or not dg else (
            f"{np.mean(dg):+.4f} | " + (f"{d[0]:+.4f} ± {d[1]:.4f}" if d else "-"))
        lines.append(f"| {label} | {_mean(gauc)} | {_mean(auc)} | {gain} |")
    return "\n".join(lines)


def _mean(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{np.mean(values):.4f}" + (f" ± {np.std(values):.4f}" if len(values) > 1 else "")


def frequency_groups(item_ids, item_freq, groups: int = GROUPS) -> np.ndarray:
    """Group (0 = rarest) of each example: the test items sorted by training frequency and
    split into ``groups`` groups of equal item count (Taobao §6.3.3)."""
    items, first = np.unique(item_ids, return_index=True)
    order = np.argsort(np.asarray(item_freq)[first], kind="stable")
    group_of = np.empty(len(items), int)
    for g, members in enumerate(np.array_split(order, groups)):
        group_of[members] = g
    return group_of[np.searchsorted(items, item_ids)]


def fig6b(results: dict, label: str = "SimTier + MAKE") -> list[dict]:
    """Per frequency group: examples, clicks, and the relative click AUC and logloss
    improvement of ``label`` over the ID model ((AUC_MM - AUC_ID) / AUC_ID and
    (LL_ID - LL_MM) / LL_ID, positive = better), mean over seeds."""
    from ppm import evaluate, metrics

    per_group: dict = {}
    for seed in results["seeds"]:
        runs = {r["label"]: r for r in results["rows"] if r["seed"] == seed}
        if REFERENCE not in runs or label not in runs:
            continue
        a, b = (evaluate.read_scores(runs[x]["metrics"]["scores"]) for x in (REFERENCE, label))
        groups = frequency_groups(a["item_id"], a["item_freq"])
        y = a["label_click"]
        for g in range(GROUPS):
            m = groups == g
            if y[m].min() == y[m].max():
                continue
            auc_id, auc_mm = (metrics.auc(y[m], s["p_click"][m]) for s in (a, b))
            ll_id, ll_mm = (metrics.logloss(y[m], s["p_click"][m]) for s in (a, b))
            entry = per_group.setdefault(g, {"group": g + 1, "examples": int(m.sum()),
                                             "clicks": int(y[m].sum()),
                                             "too_few_clicks": bool(
                                                 y[m].sum() < metrics.MIN_POSITIVES),
                                             "freq_range": [int(a["item_freq"][m].min()),
                                                            int(a["item_freq"][m].max())],
                                             "auc": [], "logloss": []})
            entry["auc"].append((auc_mm - auc_id) / auc_id)
            entry["logloss"].append((ll_id - ll_mm) / ll_id)
    return [{**e, "auc": float(np.mean(e["auc"])), "logloss": float(np.mean(e["logloss"])),
             "seeds": len(e["auc"])} for _, e in sorted(per_group.items())]


def run_fig6c(args, results: dict) -> None:
    counts = sorted(args.make_epochs)
    for seed in args.seeds:
        out = os.path.join(args.work_dir, f"seed{seed}")
        largest = max(counts)
        make_dir = os.path.join(out, f"make_pretrain_{largest}passes")
        snapshots = snapshot_run(config("make_pretrain", args, seed), make_dir, largest,
                                 args.verbose) if largest else []
        for k in counts:
            plugin = ({"init": "random"} if k == 0 else
                      {"checkpoint": snapshots[k - 1]})
            c = config("din_make", args, seed, model={"plugin": plugin})
            run_dir = train_once(c, os.path.join(out, f"din_make_{k}passes"), args.verbose)
            m = checkpoint_metrics(run_dir)
            results["fig6c"].append({"make_passes": k, "seed": seed, **m})
            logging.info("MAKE %d passes (seed %d): %s", k, seed, m)


def run_fig3(args, results: dict) -> None:
    for seed in args.seeds:
        out = os.path.join(args.work_dir, f"seed{seed}")
        for label, experiment in (("ID (DIN)", "din"), ("MM (MAKE's CTR model, no ID)",
                                                          "make_pretrain")):
            run_dir = os.path.join(out, f"{experiment}_{args.fig3_passes}passes")
            c = config(experiment, args, seed)
            for k, ckpt in enumerate(snapshot_run(c, run_dir, args.fig3_passes, args.verbose),
                                     1):
                m = checkpoint_metrics(run_dir, ckpt)
                results["fig3"].append({"model": label, "pass": k, "seed": seed, **m})
                logging.info("%s pass %d (seed %d): %s", label, k, seed, m)


def run_fig6a(args, results: dict) -> None:
    import json

    from beam_jobs import embed_items
    from ppm.encoders import contract

    reference = {}  # seed -> the ID model's metrics (the same run for every encoder)
    for text in args.encoders:
        label, _, encoder = text.partition("=")
        with open(os.path.join(encoder, contract.INFO_FILE)) as f:
            info = json.load(f)
        modality = info["modality"]
        out = os.path.join(args.work_dir, "fig6a", "".join(
            ch if ch.isalnum() else "_" for ch in label))
        cache = os.path.join(out, "embeddings")
        if not os.path.exists(os.path.join(cache, "manifest.json")):
            embed_items.run(["--dataset", os.path.join(args.run_root, "dataset"),
                             f"--{modality}_model", encoder, "--out", cache, "--overwrite"])
        for seed in args.seeds:
            data = {"data": {"embeddings": cache},
                    "model": {"multimodal": {"modality": modality}}}
            make = train_once(config("make_pretrain", args, seed,
                                     trainer={"train_passes": args.make_passes}, **data),
                              os.path.join(out, f"seed{seed}", "make_pretrain"), args.verbose)
            both = config("din_simtier_make", args, seed, **data)
            both.override({"model": {"plugin": {"checkpoint": make}}})
            run_dir = train_once(both, os.path.join(out, f"seed{seed}", "din_simtier_make"),
                                 args.verbose)
            if seed not in reference:
                reference[seed] = checkpoint_metrics(train_once(
                    config("din", args, seed), os.path.join(args.work_dir, f"seed{seed}", "din"),
                    args.verbose))
            m, r = checkpoint_metrics(run_dir), reference[seed]
            results["fig6a"].append({
                "encoder": label, "path": encoder, "seed": seed, "task": info.get("task"),
                "acc@1": (info.get("eval_after") or info.get("eval_before") or {}).get("acc@1"),
                "gauc": m["gauc"], "auc": m["auc"], "gauc_gain": m["gauc"] - r["gauc"],
                "auc_gain": m["auc"] - r["auc"]})
            logging.info("fig6a %s (seed %d): %s", label, seed, results["fig6a"][-1])


def _series(points, x_key, group_key=None):
    """{group: (xs, mean ys, std ys)} of GAUC over seeds."""
    out = {}
    for g in sorted({p.get(group_key) for p in points} if group_key else {None}, key=str):
        pts = [p for p in points if group_key is None or p[group_key] == g]
        xs = sorted({p[x_key] for p in pts})
        ys = [[p["gauc"] for p in pts if p[x_key] == x] for x in xs]
        out[g] = (xs, [float(np.mean(y)) for y in ys], [float(np.std(y)) for y in ys])
    return out


def plot(results: dict, stem: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if results["fig3"]:
        fig, ax = plt.subplots(figsize=(6, 4))
        for g, (xs, ys, sd) in _series(results["fig3"], "pass", "model").items():
            ax.errorbar(xs, ys, yerr=sd, marker="o", capsize=3, label=g)
        ax.set(xlabel="passes over train_large", ylabel="test click GAUC",
               title="Fig. 3 analogue: ID vs multimodal-only")
        ax.legend()
        written.append(_save(fig, stem + "_fig3.png"))
    if results["fig6c"]:
        fig, ax = plt.subplots(figsize=(6, 4))
        (xs, ys, sd), = _series(results["fig6c"], "make_passes").values()
        ax.errorbar(xs, ys, yerr=sd, marker="o", capsize=3)
        ax.set(xlabel="MAKE pre-training passes (0: trained jointly)",
               ylabel="DIN + MAKE test click GAUC", title="Fig. 6(c) analogue")
        written.append(_save(fig, stem + "_fig6c.png"))
    if results["fig6a"]:
        fig, ax = plt.subplots(figsize=(6, 4))
        for label in dict.fromkeys(p["encoder"] for p in results["fig6a"]):
            pts = [p for p in results["fig6a"] if p["encoder"] == label]
            ax.errorbar([pts[0]["acc@1"]], [np.mean([p["gauc_gain"] for p in pts])],
                        yerr=[np.std([p["gauc_gain"] for p in pts])], marker="o", capsize=3,
                        label=label)
        ax.set(xlabel="encoder's held-out Acc@1", ylabel="SimTier + MAKE GAUC − ID GAUC",
               title="Fig. 6(a) analogue")
        ax.legend(fontsize=8)
        written.append(_save(fig, stem + "_fig6a.png"))
    if results["fig6b"]:
        fig, ax = plt.subplots(figsize=(6, 4))
        groups = [e["group"] for e in results["fig6b"]]
        ax.bar(np.array(groups) - 0.2, [100 * e["auc"] for e in results["fig6b"]], 0.4,
               label="AUC")
        ax.bar(np.array(groups) + 0.2, [100 * e["logloss"] for e in results["fig6b"]], 0.4,
               label="logloss")
        ax.axhline(0, color="black", lw=0.5)
        ax.set(xlabel="item frequency group (1 = rarest)",
               ylabel="relative improvement over ID (%)",
               title="Fig. 6(b) analogue: SimTier + MAKE vs ID")
        ax.legend()
        written.append(_save(fig, stem + "_fig6b.png"))
    return written


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_root", required=True,
                        help="A folder with dataset/, examples/ and embeddings/.")
    parser.add_argument("--preset", default="demo", help="Training preset.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    parser.add_argument("--modality", default="image", choices=["image", "text", "both"],
                        help="The cache's modality the methods read (the paper: image).")
    parser.add_argument("--variant", type=parse_variant, action="append", default=[],
                        help="table3: an extra row, LABEL=EXPERIMENT:OVERRIDES (repeatable), "
                        "e.g. 'MAKE (frozen)=din_make:model.plugin.init=frozen'.")
    parser.add_argument("--make_passes", type=float, default=4.0,
                        help="MAKE's pre-training passes in table3 (default %(default)s).")
    parser.add_argument("--make_epochs", type=int, nargs="+", default=[0, 1, 2, 4, 8],
                        help="fig6c's MAKE pre-training passes.")
    parser.add_argument("--fig3_passes", type=int, default=10)
    parser.add_argument("--encoders", nargs="+", default=[],
                        help="fig6a: LABEL=ENCODER_DIR of each encoder to compare.")
    parser.add_argument("--work_dir", default="", help="Where runs go (<run_root>/taobao).")
    parser.add_argument("--verbose", type=int, default=0)
    parser.add_argument("--out", default=common.result_path("taobao"))
    args = parser.parse_args(argv)
    args.work_dir = args.work_dir or os.path.join(args.run_root, "taobao")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    results = {"run_root": args.run_root, "preset": args.preset, "seeds": args.seeds,
               "modality": args.modality, "make_passes": args.make_passes, "rows": [],
               "fig6b": [], "fig6c": [], "fig3": [], "fig6a": []}
    if "table3" in args.parts or "fig6b" in args.parts:
        run_table3(args, results)
        results["table3"] = table3(results)
        results["fig6b"] = fig6b(results)
        print(results["table3"])
    if "fig6c" in args.parts:
        run_fig6c(args, results)
    if "fig3" in args.parts:
        run_fig3(args, results)
    if "fig6a" in args.parts:
        run_fig6a(args, results)
    results["machine"] = common.machine()
    common.write_result(args.out, results)
    for path in plot(results, args.out[:-len(".json")]):
        print(path)
    for name in ("fig6b", "fig6c", "fig3", "fig6a"):
        for entry in results[name]:
            print(name, entry)
    return 0


if __name__ == "__main__":
    sys.exit(main())
