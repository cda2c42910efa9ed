"""Benchmark: the analogue of PPM Table 2 (the baseline zoo without and with the PPM plug-in).

For every model of the zoo (Wide&Deep, DeepFM, DIN, DSIN, MIAN; ``--models``), trains on the
same examples and cache, with the same preset and seed, one pass over each training window
(``train_small``, one week; ``train_large``, the whole training period: PPM Table 1):

- ``<model>``: the model alone (Table 2's "wo. PPM" columns);
- ``<model>_ppm``: the same model whose representation also receives the PPM module's
  ``[U_MO | I_MO]``, loaded from a pre-trained PPM and fine-tuned (Table 2's "w. PPM").

PPM is pre-trained once per seed on the pretrain window (``--ppm_run`` reuses a finished
``ppm_pretrain`` run instead, e.g. the demo's, for every seed: the seeds then vary the ranking
models only). Every run is evaluated on the test day (:mod:`ppm.evaluate`): click and order
AUC and P@2. The table gives the mean ± std over seeds, the average over models, and the
improvement of w. PPM over wo. PPM; each AUC's sampling error is the Hanley-McNeil standard
error on the test day's positives and negatives (Hanley & McNeil, Radiology 1982).

The paper's expectations are hypotheses, checked and reported, not assumed: attention models
(DIN, DSIN, MIAN) beat Wide&Deep and DeepFM; PPM helps every model; more on the small window;
w. PPM on the small window >= wo. PPM on the large one for most models.

Run (from the repository root, after ``make demo`` built ``runs/demo``)::

    .venv/bin/python benchmarks/table2.py --run_root runs/demo --preset demo --seeds 0 1

Writes ``benchmarks/results/table2.json`` (every run's metrics and the markdown table); runs go
to ``<run_root>/table2/``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ppm  # noqa: E402,F401
from benchmarks import common  # noqa: E402
from benchmarks.table3 import set_passes  # noqa: E402

NAMES = {"wide_deep": "Wide&Deep", "deepfm": "DeepFM", "din": "DIN", "dsin": "DSIN",
         "mian": "MIAN"}
ATTENTION = ("din", "dsin", "mian")
WINDOWS = ("train_small", "train_large")
TASKS = ("click", "order")


def auc_standard_error(auc: float, positives: int, negatives: int) -> float | None:
    """Hanley-McNeil standard error of an AUC measured on ``positives`` and ``negatives``."""
    if auc is None or positives < 1 or negatives < 1:
        return None
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc)
           + (negatives - 1) * (q2 - auc * auc)) / (positives * negatives)
    return math.sqrt(max(var, 0.0))


def _pretrained(args, paths, seed: int, out: str) -> str:
    from ppm import configs, train

    if args.ppm_run:
        return args.ppm_run
    pre = configs.resolve("ppm_pretrain", args.preset, validate=False)
    pre.override({"data": {**paths, "seed": seed}})
    set_passes(pre, args.ppm_passes)
    ppm_dir = os.path.join(out, "ppm_pretrain")
    train.train(pre, ppm_dir, verbose=args.verbose)
    return ppm_dir


def run(args) -> dict:
    from ppm import configs, evaluate, train

    root = args.run_root
    paths = configs.data_paths(root)
    results = {"preset": args.preset, "run_root": root, "seeds": args.seeds,
               "passes": args.passes, "ppm_run": args.ppm_run, "models": args.models,
               "windows": args.windows, "rows": []}
    for seed in args.seeds:
        out = os.path.join(root, "table2", f"passes{args.passes:g}_seed{seed}")
        ppm_dir = _pretrained(args, paths, seed, out)
        for model in args.models:
            for window in args.windows:
                for plugin in (False, True):
                    experiment = f"{model}_ppm" if plugin else model
                    c = configs.resolve(experiment, args.preset, validate=False)
                    c.override({"data": {**paths, "train_window": window, "seed": seed}})
                    set_passes(c, args.passes)
                    if plugin:
                        c.override({"model": {"plugin": {"checkpoint": ppm_dir}}})
                    c.validate()
                    model_dir = os.path.join(out, f"{experiment}_{window}")
                    summary = train.train(c, model_dir, verbose=args.verbose)
                    m = evaluate.evaluate_run(model_dir, "test", progress=False)
                    row = {"model": model, "plugin": plugin, "window": window, "seed": seed,
                           "train_seconds": summary["seconds"],
                           "train_steps": summary["steps"], "examples": m["examples"]}
                    for t in TASKS:
                        tm = m["tasks"][t]
                        row[t] = {"auc": tm["auc"], "p@2": tm["p@2"],
                                  "positives": tm["positives"],
                                  "auc_se": auc_standard_error(
                                      tm["auc"], tm["positives"],
                                      m["examples"] - tm["positives"])}
                    results["rows"].append(row)
                    logging.info("%s %s seed %d: click AUC %.4f, order AUC %.4f", experiment,
                                 window, seed, row["click"]["auc"], row["order"]["auc"])
    return results


def _values(results, model, plugin, window, task, key):
    return [r[task][key] for r in results["rows"] if r["model"] == model
            and r["plugin"] == plugin and r["window"] == window
            and r[task][key] is not None]


def _mean(vals):
    return sum(vals) / len(vals) if vals else None


def _fmt(vals, signed=False) -> str:
    if not vals:
        return "-"
    mean = _mean(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals)) if len(vals) > 1 else None
    text = f"{mean:+.4f}" if signed else f"{mean:.4f}"
    return text + (f" ± {std:.4f}" if std is not None else "")


COLUMNS = [(w, t, k) for w in WINDOWS for t in TASKS for k in ("auc", "p@2")]


def table(results: dict) -> str:
    """Markdown: rows model x (wo./w. PPM, improvement), columns window x task x metric."""
    cols = [c for c in COLUMNS if c[0] in results["windows"]]
    head = " | ".join(f"{w} {t} {'AUC' if k == 'auc' else 'P@2'}" for w, t, k in cols)
    lines = [f"| model | {head} |", "|---|" + "---|" * len(cols)]
    models = list(results["models"])
    for model in models + ["average"]:
        names = models if model == "average" else [model]

        def vals(plugin, col, model=model, names=names):
            """Per seed for one model; per model (means over seeds) for the average."""
            w, t, k = col
            if model != "average":
                return _values(results, model, plugin, w, t, k)
            per_model = [_mean(_values(results, n, plugin, w, t, k)) for n in names]
            return [v for v in per_model if v is not None]

        label = "Average" if model == "average" else NAMES.get(model, model)
        for plugin, suffix in ((False, "wo. PPM"), (True, "w. PPM")):
            lines.append(f"| {label} {suffix} | "
                         + " | ".join(_fmt(vals(plugin, c)) for c in cols) + " |")
        gains = []
        for c in cols:
            wo, w = vals(False, c), vals(True, c)
            gains.append([b - a for a, b in zip(wo, w)])  # per seed, or per model (average)
        lines.append(f"| {label} improvement | "
                     + " | ".join(_fmt(g, signed=True) for g in gains) + " |")
    return "\n".join(lines)


def hypotheses(results: dict) -> dict:
    """The paper's Table 2 expectations, each measured on click AUC (mean over seeds)."""
    def auc(model, plugin, window):
        return _mean(_values(results, model, plugin, window, "click", "auc"))

    models = list(results["models"])
    out = {}
    if "train_large" in results["windows"]:
        att = [auc(m, False, "train_large") for m in models if m in ATTENTION]
        plain = [auc(m, False, "train_large") for m in models if m not in ATTENTION]
        if att and plain:
            out["attention models beat W&D/DeepFM (wo. PPM, train_large)"] = (
                f"{_mean(att):.4f} vs {_mean(plain):.4f}: "
                + ("holds" if _mean(att) > _mean(plain) else "does not hold"))
    for window in results["windows"]:
        helped = [m for m in models if auc(m, True, window) > auc(m, False, window)]
        out[f"PPM helps every model ({window})"] = (
            f"{len(helped)} of {len(models)} ({', '.join(NAMES.get(m, m) for m in helped)})")
    if set(WINDOWS) <= set(results["windows"]):
        more = [m for m in models if auc(m, True, "train_small") - auc(m, False, "train_small")
                > auc(m, True, "train_large") - auc(m, False, "train_large")]
        out["PPM helps more on train_small"] = f"{len(more)} of {len(models)} models"
        small = [m for m in models if auc(m, True, "train_small") >= auc(m, False, "train_large")]
        out["w. PPM on train_small >= wo. PPM on train_large"] = (
            f"{len(small)} of {len(models)} models")
    return out


def test_day(results: dict) -> str:
    """The test day's size and the typical sampling error of an AUC on it."""
    r = results["rows"][0]
    se = [x["click"]["auc_se"] for x in results["rows"] if x["click"]["auc_se"]]
    return (f"test day: {r['examples']:,} examples, {r['click']['positives']:,} clicks, "
            f"{r['order']['positives']:,} orders; click AUC standard error (Hanley-McNeil) "
            f"{min(se):.4f}-{max(se):.4f}")


def main(argv=None) -> int:
    from ppm import configs

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_root", default="runs/demo",
                        help="A demo folder with dataset/, examples/, embeddings/.")
    parser.add_argument("--preset", default="demo", help="Training preset.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                        help="Seeds to average (data order and initialisation).")
    parser.add_argument("--models", nargs="+", default=list(configs.ZOO),
                        choices=list(configs.ZOO), help="Models of the zoo to train.")
    parser.add_argument("--windows", nargs="+", default=list(WINDOWS), choices=list(WINDOWS))
    parser.add_argument("--passes", type=float, default=1.0,
                        help="Passes over the training window (0: the preset's steps).")
    parser.add_argument("--ppm_run", default=None,
                        help="A finished ppm_pretrain run used for every seed (default: "
                        "pre-train one per seed).")
    parser.add_argument("--ppm_passes", type=float, default=None,
                        help="Passes of PPM pre-training (default: the preset's).")
    parser.add_argument("--verbose", type=int, default=2)
    parser.add_argument("--out", default=common.result_path("table2"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    results = run(args)
    results["machine"] = common.machine()
    results["table"] = table(results)
    results["hypotheses"] = hypotheses(results)
    results["test_day"] = test_day(results)
    common.write_result(args.out, results)
    print(results["test_day"])
    print(results["table"])
    for k, v in results["hypotheses"].items():
        print(f"- {k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
