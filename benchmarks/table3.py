"""Benchmark: the analogue of PPM Table 3 and the cold-start curve on a synthetic world.

Trains, on the same examples and cache, with the same preset and seed, each model for one
pass over its training window (``--passes N``: N passes; 0: the preset's steps):

- ``base``: ID and modal features of each item concatenated, one shared transformer;
- ``urm_wo_ppm``: IDSM + MMoE, no modal features (the paper's "URM wo. PPM");
- ``urm_ppm_random``, ``urm_ppm_frozen``, ``urm`` (finetune): URM with the PPM module randomly
  initialised, loaded and frozen, loaded and fine-tuned;
- the data-efficiency pair: ``urm`` on ``train_small`` (one week) against ``urm_wo_ppm`` on
  ``train_large``.

``--params_override`` changes every config, PPM pre-training included (e.g.
``model.ppm.target_mode=history``). ``--variant "LABEL=EXPERIMENT:OVERRIDES"`` adds a row
(``OVERRIDES`` a ``--params_override`` string), e.g.
``--variant "URM + PPM, ID dropout 0.3=urm:model.id_dropout=0.3"``; ``--only`` keeps the
named rows of the table above (by experiment), so a variant can be compared with its
baselines alone.

The PPM module is pre-trained once per seed (``ppm_pretrain`` on the pretrain window). Each
model is evaluated on the test day with :mod:`ppm.evaluate`: AUC (± its bootstrap error over
users), GAUC, P@2 per task, AUC by target-item training frequency, next to the oracle AUC of
the world's true probabilities. Each row's click AUC is also compared with ``URM wo. PPM``'s
on the same examples: the mean difference over seeds and its paired bootstrap error (users
drawn alike for both). Buckets with fewer than 50 clicks are flagged: their AUC cannot be
read. The expected direction (PPM helps, most on cold items; finetune >= frozen >= random) is
the hypothesis under test; the script reports what it measures.

Run (from the repository root, after ``make demo`` built ``runs/demo``)::

    .venv/bin/python benchmarks/table3.py --run_root runs/demo --preset demo --seeds 0 1 2

Writes ``benchmarks/results/table3.json`` and ``table3_cold_start.png``; runs go to
``<run_root>/table3/``. The demo world's single test day has too few clicks on cold items to
read; docs/benchmarks.md ("The plug-in on cold items") builds a ``demo_week`` world (7 test
days) and a MovieLens-format dataset (``benchmarks/movielens_format.py``) for them, and gives
the commands.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ppm  # noqa: E402,F401
from benchmarks import common  # noqa: E402

ROWS = (  # (label, experiment, train window)
    ("Base", "base", "train_large"),
    ("URM wo. PPM", "urm_wo_ppm", "train_large"),
    ("URM + PPM (random)", "urm_ppm_random", "train_large"),
    ("URM + PPM (frozen)", "urm_ppm_frozen", "train_large"),
    ("URM + PPM (finetune)", "urm", "train_large"),
    ("URM + PPM (finetune), train_small", "urm", "train_small"),
)
# Rows with overrides of their experiment: (label, experiment, window, overrides). The
# plug-in fine-tuned at the model's own rate, as before the experiments' 0.1 (see
# ppm/configs/experiments.py).
OVERRIDE_ROWS = (
    ("URM + PPM (finetune, plug-in at the model's rate)", "urm", "train_large",
     "model.plugin.learning_rate_multiplier=1.0"),
)


def set_passes(config, passes: float) -> None:
    """Trains ``config`` for ``passes`` passes over its window (0: the preset's own length).

    Sets ``trainer.train_passes``, which decides the steps when > 0 (a ``train_steps``
    override alone is ignored by a preset that sets passes, as ``demo`` does)."""
    if passes:
        config.override({"trainer": {"train_passes": float(passes)}})


def parse_variant(text: str) -> tuple[str, str, str, str]:
    """``"LABEL=EXPERIMENT:OVERRIDES"`` -> (label, experiment, "train_large", overrides)."""
    label, sep, rest = text.partition("=")
    experiment, _, overrides = rest.partition(":")
    if not sep or not label or not experiment:
        raise argparse.ArgumentTypeError(
            f"--variant {text!r}: expected LABEL=EXPERIMENT:OVERRIDES, e.g. "
            "'URM + PPM, ID dropout 0.3=urm:model.id_dropout=0.3'")
    return label, experiment, "train_large", overrides


def rows(args) -> list[tuple[str, str, str, str]]:
    """The rows to train: (label, experiment, window, overrides)."""
    base = [(label, e, w, o) for label, e, w, o in [r + ("",) for r in ROWS] + list(OVERRIDE_ROWS)
            if not args.only or e in args.only or label in args.only]
    return base + list(args.variant)


def run(args) -> dict:
    from ppm import configs, evaluate, train

    root = args.run_root
    paths = configs.data_paths(root)
    results = {"preset": args.preset, "run_root": root, "seeds": args.seeds,
               "passes": args.passes, "ppm_passes": args.ppm_passes, "rows": []}
    for seed in args.seeds:
        out = os.path.join(args.work_dir or os.path.join(root, "table3"),
                           f"passes{args.passes:g}_ppm{args.ppm_passes}_seed{seed}")
        pre = configs.resolve("ppm_pretrain", args.preset, params_override=args.params_override,
                              validate=False)
        pre.override({"data": {**paths, "seed": seed}})
        ppm_passes = args.passes if args.ppm_passes is None else args.ppm_passes
        set_passes(pre, ppm_passes)
        ppm_dir = args.ppm_run or os.path.join(out, "ppm_pretrain")
        ppm_steps = None
        if not args.ppm_run:
            ppm_steps = train.train(pre, ppm_dir, verbose=args.verbose)["steps"]
        pre_metrics = evaluate.evaluate_run(ppm_dir, "test", progress=False)
        results["rows"].append({"label": "PPM alone (ID-free, pretrain window)",
                                "ppm_train_steps": ppm_steps,
                                "experiment": "ppm_pretrain", "seed": seed,
                                "metrics": pre_metrics})
        for label, experiment, window, overrides in rows(args):
            c = configs.resolve(experiment, args.preset, params_override=",".join(
                o for o in (args.params_override, overrides) if o), validate=False)
            c.override({"data": {**paths, "train_window": window, "seed": seed}})
            set_passes(c, args.passes)
            if c.model.plugin.kind and c.model.plugin.init != "random":
                c.override({"model": {"plugin": {"checkpoint": ppm_dir}}})
            c.validate()
            model_dir = os.path.join(out, f"{experiment}_{window}" + (
                "_" + "".join(ch if ch.isalnum() else "_" for ch in overrides)
                if overrides else ""))
            summary = train.train(c, model_dir, verbose=args.verbose)
            m = evaluate.evaluate_run(model_dir, "test", progress=False)
            results["rows"].append({"label": label, "experiment": experiment, "seed": seed,
                                    "window": window, "metrics": m,
                                    "train_seconds": summary["seconds"]})
            logging.info("%s (seed %d): %s", label, seed, {
                t: round(v["auc"] or 0, 4) for t, v in m["tasks"].items()})
    return results


def _labels(results: dict) -> list[str]:
    labels = []
    for r in results["rows"]:
        if r["label"] not in labels:
            labels.append(r["label"])
    return labels


def _mean(rows, get) -> str:
    """Mean over seeds, with the standard deviation when there are several."""
    import numpy as np

    vals = [v for v in (get(m) for m in rows) if v is not None]
    if not vals:
        return "-"
    return f"{np.mean(vals):.4f}" + (f" ± {np.std(vals):.4f}" if len(vals) > 1 else "")


def _metric(task: str, key: str):
    return lambda m: m["tasks"].get(task, {}).get(key)


def _bucket(name: str):
    return lambda m: m["tasks"]["click"]["auc_by_frequency"][name]["auc"]


def paired_differences(results: dict, reference: str = "URM wo. PPM", task: str = "click",
                       replicates: int = 200) -> dict:
    """``{label: {bucket or "all": (mean difference, paired bootstrap SE)}}`` of each row's
    ``task`` AUC minus ``reference``'s, per seed on the same test examples (users drawn alike
    for both runs), averaged over seeds (the SE of the mean over seeds: sqrt(mean SE^2 / n))."""
    import numpy as np

    from ppm import evaluate, metrics

    out: dict = {}
    for seed in results["seeds"]:
        ref = [r for r in results["rows"] if r["label"] == reference and r["seed"] == seed]
        if not ref or not ref[0]["metrics"].get("scores"):
            continue
        a = evaluate.read_scores(ref[0]["metrics"]["scores"])
        boot = metrics.Bootstrap(a["user_id"], replicates=replicates, seed=seed)
        masks = {"all": np.ones(len(a["user_id"]), bool),
                 **metrics.bucket_masks(a["item_freq"])}
        for r in results["rows"]:
            if r["seed"] != seed or not r["metrics"].get("scores") or r["label"] == reference \
                    or f"p_{task}" not in evaluate.read_scores(r["metrics"]["scores"]):
                continue
            b = evaluate.read_scores(r["metrics"]["scores"])
            if not np.array_equal(a["request_id"], b["request_id"]) or not np.array_equal(
                    a["item_id"], b["item_id"]):
                continue  # not the same examples in the same order
            for name, mask in masks.items():
                d = metrics.paired_auc_difference(a[f"label_{task}"], a[f"p_{task}"],
                                                  b[f"p_{task}"], boot, mask)
                if d is not None:
                    out.setdefault(r["label"], {}).setdefault(name, []).append(d)
    return {label: {name: (float(np.mean([p for p, _ in v])),
                           float(np.sqrt(np.mean([se ** 2 for _, se in v]) / len(v))), len(v))
                    for name, v in by.items()} for label, by in out.items()}


def difference_table(results: dict, reference: str = "URM wo. PPM") -> str:
    """Markdown: click AUC minus the reference's, overall and per bucket, ± paired SE."""
    diffs = paired_differences(results, reference)
    if not diffs:
        return ""
    names = list(next(iter(diffs.values())))
    lines = [f"| click AUC − {reference} (mean over seeds ± paired bootstrap SE) | "
             + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, by in diffs.items():
        lines.append(f"| {label} | " + " | ".join(
            f"{by[n][0]:+.4f} ± {by[n][1]:.4f}" if n in by else "-" for n in names) + " |")
    return "\n".join(lines)


def thin_buckets(results: dict, minimum: int | None = None) -> list[str]:
    """Warnings for the test day's click buckets with too few clicks to read."""
    from ppm import evaluate, metrics

    minimum = minimum or metrics.MIN_POSITIVES
    first = results["rows"][-1]["metrics"]["tasks"]["click"]["auc_by_frequency"]
    return [f"bucket seen {b}x holds {v['positives']} clicks (< {minimum}): its AUC is noise"
            for b, v in first.items() if evaluate.few_positives(v, minimum)]


def table(results: dict) -> str:
    """Markdown: mean (± std over seeds) of AUC, P@2 and GAUC per task, and the oracle."""
    cols = [("click AUC", _metric("click", "auc")), ("click P@2", _metric("click", "p@2")),
            ("click GAUC", _metric("click", "gauc")), ("order AUC", _metric("order", "auc")),
            ("order P@2", _metric("order", "p@2")), ("cart AUC", _metric("cart", "auc"))]
    return _markdown(results, cols)


def cold_table(results: dict) -> str:
    """Markdown: click AUC by target-item frequency bucket (PPM Fig. 2)."""
    first = results["rows"][-1]["metrics"]["tasks"]["click"]["auc_by_frequency"]
    cols = [(f"seen {b}x ({v['examples']:,} ex., {v['positives']} clicks)", _bucket(b))
            for b, v in first.items()]
    return _markdown(results, cols)


def _markdown(results: dict, cols) -> str:
    lines = ["| model | " + " | ".join(c for c, _ in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for label in _labels(results):
        rows = [r["metrics"] for r in results["rows"] if r["label"] == label]
        lines.append(f"| {label} | " + " | ".join(_mean(rows, get) for _, get in cols) + " |")
    oracle = results["rows"][-1]["metrics"].get("oracle")
    if oracle:
        lines.append("| oracle (true probabilities) | " + " | ".join(
            _mean([{"tasks": oracle}], get) for _, get in cols) + " |")
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label in _labels(results):
        rows = [r["metrics"] for r in results["rows"] if r["label"] == label
                and r.get("window", "train_large") == "train_large"]
        if not rows:
            continue
        buckets = list(rows[0]["tasks"]["click"]["auc_by_frequency"])
        vals = [[m["tasks"]["click"]["auc_by_frequency"][b]["auc"] for m in rows]
                for b in buckets]
        ax.plot(buckets, [sum(v) / len(v) if None not in v else float("nan") for v in vals],
                marker="o", label=label)
    ax.set_xlabel("target item: appearances in train_large")
    ax.set_ylabel("click AUC on the test day")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_root", default="runs/demo",
                        help="A demo folder with dataset/, examples/, embeddings/.")
    parser.add_argument("--preset", default="demo", help="Training preset.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="Seeds to average.")
    parser.add_argument("--verbose", type=int, default=2)
    parser.add_argument("--passes", type=float, default=1.0,
                        help="Train every model (and PPM) for this many passes over its "
                        "window (default 1); 0 keeps the preset's length.")
    parser.add_argument("--ppm_passes", type=float, default=None,
                        help="Passes of PPM pre-training over the pretrain window (default: "
                        "--passes).")
    parser.add_argument("--work_dir", default="",
                        help="Where the runs go (default: <run_root>/table3).")
    parser.add_argument("--ppm_run", default="",
                        help="A ppm_pretrain run to plug in for every seed (e.g. the demo's "
                        "runs/demo/train/demo_ppm_pretrain) instead of pre-training one per "
                        "seed.")
    parser.add_argument("--variant", type=parse_variant, action="append", default=[],
                        help="An extra row, LABEL=EXPERIMENT:OVERRIDES (repeatable).")
    parser.add_argument("--only", nargs="+", default=[],
                        help="Train only these rows of the standard table (experiments or "
                        "labels, e.g. urm_wo_ppm urm); default: all.")
    parser.add_argument("--params_override", default="",
                        help="Overrides of every config, PPM pre-training included (e.g. "
                        "'model.ppm.target_mode=history'); a variant's own come after.")
    parser.add_argument("--out", default=common.result_path("table3"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    results = run(args)
    results["machine"] = common.machine()
    results["table"] = table(results)
    results["cold_start_table"] = cold_table(results)
    results["difference_table"] = difference_table(results)
    results["warnings"] = thin_buckets(results)
    common.write_result(args.out, results)
    plot(results, args.out.replace(".json", "_cold_start.png"))
    print(results["table"])
    print(results["cold_start_table"])
    print(results["difference_table"])
    for w in results["warnings"]:
        logging.warning(w)
    return 0


if __name__ == "__main__":
    sys.exit(main())
