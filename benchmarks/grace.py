"""Benchmark: GRACE and its baselines on the synthetic world's search pre-ranking scenario.

The analogues of "Optimizing E-commerce Search: Toward a Generalizable and Rank-Consistent
Pre-Ranking Model" (SIGIR 2024, arXiv:2405.05606) §3, each a ``--parts`` choice:

- ``table1`` (Table 1): PLE, MMoE, Distillation (PLE that also regresses the ranking model's
  score) and GRACE, one pass over ``train_large`` each: test-day click AUC and order (CVR)
  AUC, mean ± std over seeds, and the paired user-bootstrap SE of each click AUC difference
  from PLE on the same examples;
- ``table2`` (Table 2): GRACE without the consistency tasks, without the generalization module
  (the item-id vocabulary, no alignment), with the graph embeddings as a fixed item table
  (pre-trained item id), without the hash ID (attributes only), and GRACE, with each item
  representation's parameter count;
- ``table3`` (Table 3, from the runs above): Recall@k (Eq. 12) between the pre-ranking model's
  top k (by its click probability) and the ranking model's top k (``rank`` < k) among each test
  request's recalled candidates, k in 3, 10, 20, 50, 100, averaged over requests;
- ``longtail``: click AUC on the test examples whose item is in the rarest fifth of the test
  items by training frequency, and Recall@k on the rarest fifth of the requests (by the median
  training frequency of their candidates), PLE against GRACE;
- ``latency``: one request of ``--candidates`` (1,000) candidates through the exported model and
  the local gRPC server (``ppm.serving.server``, its own process), p50/p99 of sequential
  requests, GRACE and PLE; with ``--urm_run`` (a trained URM, e.g. ``runs/demo/train/demo_urm``
  after ``make demo``) the same number of candidates through URM, for the ratio.

``--run_root`` holds the search world; missing parts are built first: ``dataset/``
(``python -m ppm.data.synthetic --scenario search``), ``examples/``, ``graph/``
(``beam_jobs.item_graph`` over the pretrain window) and ``graph_embeddings/``
(``ppm.graph.pretrain``). The paper's directions are hypotheses; the script reports what it
measures. Run::

    .venv/bin/python benchmarks/grace.py --run_root runs/search --seeds 0 1

Writes ``benchmarks/results/grace.json``; runs go to ``<run_root>/grace/``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import ppm  # noqa: E402,F401
from benchmarks import common  # noqa: E402
from benchmarks.table3 import parse_variant  # noqa: E402

TABLE1 = (("PLE", "grace_ple"), ("MMoE", "grace_mmoe"), ("Distillation", "grace_distillation"),
          ("GRACE", "grace"))
TABLE2 = (("w/o consistency", "grace_wo_consistency"),
          ("w/o generalization", "grace_wo_generalization"),
          ("pre-trained item id", "grace_pretrained_id"), ("w/o hash id", "grace_wo_hash_id"),
          ("GRACE", "grace"))
RECALL_KS = (3, 10, 20, 50, 100)
# Table 3's rows (the paper: PLE and GRACE), with the other rows that learn from the ranking
# model (the distillation baseline, and PLE + the consistency tasks: GRACE w/o generalization)
CONSISTENCY_ROWS = ("PLE", "Distillation", "w/o generalization", "GRACE")
PARTS = ("table1", "table2", "table3", "longtail", "latency")
TAIL_SHARE = 0.2


def prepare(args) -> dict:
    """The search world's folders under ``--run_root``, built where missing."""
    paths = {name: os.path.join(args.run_root, name)
             for name in ("dataset", "examples", "graph", "graph_embeddings")}
    if not os.path.exists(os.path.join(paths["dataset"], "dataset.json")):
        from ppm.data import synthetic

        synthetic.generate(paths["dataset"], args.scale, args.world_seed, progress=True,
                           with_queries=False, scenario="search")
    if not os.path.exists(os.path.join(paths["examples"], "stats.json")):
        from beam_jobs import build_examples

        build_examples.run(["--dataset", paths["dataset"], "--out", paths["examples"],
                            "--overwrite"])
    if not os.path.exists(os.path.join(paths["graph"], "graph.json")):
        from beam_jobs import item_graph

        item_graph.run(["--dataset", paths["dataset"], "--out", paths["graph"], "--overwrite"])
    if not os.path.exists(os.path.join(paths["graph_embeddings"], "manifest.json")):
        from ppm.graph import pretrain

        pretrain.pretrain(paths["graph"], paths["graph_embeddings"], overwrite=True)
    return paths


def config(experiment: str, args, paths: dict, seed: int, overrides: str = ""):
    from official.modeling import hyperparams

    from ppm import configs

    c = configs.resolve(experiment, args.preset, validate=False)
    c.override({"data": {"dataset": paths["dataset"], "examples": paths["examples"],
                         "embeddings": "", "seed": seed},
                "model": {"grace": {"graph_embeddings": paths["graph_embeddings"]}}})
    if overrides:
        c = hyperparams.override_params_dict(c, overrides, is_strict=True)
    return c


def parameters(run_dir: str) -> dict:
    """Weights of the model (all, and of its item representation: the table GRACE serves)."""
    from ppm import evaluate

    model = evaluate.load_model(run_dir)[0]
    items = model.fields.items
    # the pretrained table is built when first read: the representation of pretrained_id only
    item_weights = sum(int(np.prod(w.shape)) for w in items.weights)
    return {"model": int(sum(np.prod(w.shape) for w in model.weights)),
            "item_representation": item_weights}


def run_tables(args, paths: dict, results: dict, rows) -> None:
    from ppm import evaluate, train

    done = {(r["label"], r["seed"]) for r in results["rows"]}
    for seed in args.seeds:
        for label, experiment, *rest in rows:
            overrides = rest[0] if rest else ""
            if (label, seed) in done:
                continue
            run_dir = os.path.join(args.work_dir, f"seed{seed}", experiment + (
                "_" + "".join(ch if ch.isalnum() else "_" for ch in overrides)
                if overrides else ""))
            if not os.path.exists(os.path.join(run_dir, train.SUMMARY_FILE)):
                c = config(experiment, args, paths, seed, overrides)
                c.validate()
                t = time.perf_counter()
                train.train(c, run_dir, verbose=args.verbose)
                logging.info("%s (seed %d) trained in %.0f s", label, seed,
                             time.perf_counter() - t)
            m = evaluate.evaluate_run(run_dir, "test", progress=False)
            results["rows"].append({"label": label, "seed": seed, "experiment": experiment,
                                    "run": run_dir, "metrics": m,
                                    "parameters": parameters(run_dir)})
            logging.info("%s (seed %d): click AUC %.4f, order AUC %.4f", label, seed,
                         m["tasks"]["click"]["auc"], m["tasks"]["order"]["auc"])


def _mean(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{np.mean(values):.4f}" + (f" ± {np.std(values):.4f}" if len(values) > 1 else "")


def auc_table(results: dict, rows, reference: str) -> str:
    """Markdown: click and order AUC (mean ± std over seeds), the click AUC difference from
    ``reference`` (mean over seeds ± paired bootstrap SE), parameters."""
    from benchmarks.table3 import paired_differences

    diffs = paired_differences(results, reference=reference)
    lines = [f"| model | click AUC | order AUC | click AUC − {reference} (± paired SE) | "
             "item representation params | model params |", "|---|---|---|---|---|---|"]
    for label, *_ in rows:
        runs = [r for r in results["rows"] if r["label"] == label]
        if not runs:
            continue
        click = [r["metrics"]["tasks"]["click"]["auc"] for r in runs]
        order = [r["metrics"]["tasks"]["order"]["auc"] for r in runs]
        d = diffs.get(label, {}).get("all")
        diff = "-" if label == reference or not d else f"{d[0]:+.4f} ± {d[1]:.4f}"
        p = runs[0]["parameters"]
        lines.append(f"| {label} | {_mean(click)} | {_mean(order)} | {diff} | "
                     f"{p['item_representation']:,} | {p['model']:,} |")
    return "\n".join(lines)


def hash_collisions(args, paths: dict) -> dict:
    """How many of the catalogue's items share their hash-ID row with another item."""
    from ppm.data import canonical
    from ppm.layers.hash_embedding import collision_report

    items = canonical.read_parquet(os.path.join(paths["dataset"], canonical.ITEMS_FILE),
                                   columns=["item_id"]).column("item_id").to_pylist()
    buckets = config("grace", args, paths, args.seeds[0]).model.grace.hash_buckets
    return collision_report(items, buckets)


def recall_at_k(scores: dict, ks=RECALL_KS, requests=None) -> dict:
    """Eq. 12 per request over its recalled candidates (``rank`` >= 0), averaged: ``|top k by
    p_click ∩ {rank < k}| / k`` (requests with fewer than k candidates are left out at k).
    Tied scores are ordered at random (seeded): the examples' own order follows the ranking
    model's, and would pass for consistency."""
    keep = np.asarray(scores["rank"]) >= 0
    if requests is not None:
        keep &= np.isin(scores["request_id"], list(requests))
    req, rank, p = scores["request_id"][keep], scores["rank"][keep], scores["p_click"][keep]
    order = np.lexsort((np.random.default_rng(0).random(len(p)), -p, req))
    req, rank = req[order], rank[order]
    starts = np.flatnonzero(np.r_[True, req[1:] != req[:-1]])
    ends = np.r_[starts[1:], len(req)]
    out = {}
    for k in ks:
        hits = [np.sum(rank[s:s + k] < k) / k for s, e in zip(starts, ends) if e - s >= k]
        out[k] = float(np.mean(hits)) if hits else None
    return out


def tail_requests(scores: dict, share: float = TAIL_SHARE) -> set:
    """The rarest ``share`` of the test requests, by the median training frequency of their
    recalled candidates."""
    keep = np.asarray(scores["rank"]) >= 0
    req, freq = scores["request_id"][keep], scores["item_freq"][keep]
    medians = {r: float(np.median(freq[req == r])) for r in np.unique(req)}
    cut = np.quantile(list(medians.values()), share)
    return {r for r, m in medians.items() if m <= cut}


def consistency(results: dict, labels=CONSISTENCY_ROWS) -> dict:
    """Recall@k (all requests and long-tail requests) and long-tail click AUC per label:
    ``{label: {"recall": {k: [per seed]}, "tail_recall": ..., "tail_auc": [...]}}``."""
    from benchmarks.taobao import frequency_groups
    from ppm import evaluate, metrics

    out: dict = {}
    for r in results["rows"]:
        if r["label"] not in labels:
            continue
        s = evaluate.read_scores(r["metrics"]["scores"])
        groups = frequency_groups(s["item_id"], s["item_freq"], groups=round(1 / TAIL_SHARE))
        tail = groups == 0
        entry = out.setdefault(r["label"], {"recall": {}, "tail_recall": {}, "tail_auc": [],
                                            "tail_examples": int(tail.sum()),
                                            "tail_clicks": int(s["label_click"][tail].sum())})
        for key, requests in (("recall", None), ("tail_recall", tail_requests(s))):
            for k, v in recall_at_k(s, requests=requests).items():
                entry[key].setdefault(k, []).append(v)
        entry["tail_auc"].append(metrics.auc(s["label_click"][tail], s["p_click"][tail]))
    return out


def recall_table(cons: dict, key: str = "recall") -> str:
    ks = RECALL_KS
    lines = ["| model | " + " | ".join(f"R@{k}" for k in ks) + " |",
             "|---|" + "---|" * len(ks)]
    for label, e in cons.items():
        lines.append(f"| {label} | " + " | ".join(_mean(e[key].get(k, [])) for k in ks) + " |")
    return "\n".join(lines)


def run_latency(args, paths: dict, results: dict) -> None:
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from benchmarks.serving_latency import ServerProcess, sequential
    from ppm import export
    from ppm.serving import client, requests

    workdir = os.path.join(args.work_dir, "latency")
    os.makedirs(workdir, exist_ok=True)
    seed = args.seeds[0]
    models = {"grace": (os.path.join(args.work_dir, f"seed{seed}", "grace"), paths),
              "grace_ple": (os.path.join(args.work_dir, f"seed{seed}", "grace_ple"), paths)}
    if args.urm_run:
        root = os.path.dirname(os.path.dirname(os.path.abspath(args.urm_run)))
        models["urm"] = (args.urm_run, {"examples": os.path.join(root, "examples"),
                                        "dataset": os.path.join(root, "dataset")})
    servers, stubs, request_of = {}, {}, {}
    try:
        for name, (run, where) in models.items():
            base = os.path.join(workdir, "saved_models")
            version = export.latest_export(run, os.path.join(base, name)) or export.export(
                run, name, base)
            servers[name] = ServerProcess(name, os.path.dirname(version), workdir,
                                          args.workers,
                                          ["--max_rows_per_request", str(args.candidates)])
            stubs[name] = prediction_service_pb2_grpc.PredictionServiceStub(
                client.channel(servers[name].target))
            ranking = requests.sample_ranking_request(
                where["examples"], os.path.join(where["dataset"], "items.parquet"),
                args.candidates, history=50)
            with client.Client(servers[name].target, name) as c:
                feats = client.ranking_features(ranking, c.signature_inputs())
            request_of[name] = client.predict_request(name, feats)
            stubs[name].Predict(request_of[name], timeout=600)  # first call, untimed
        latency = sequential(stubs, request_of, args.requests, warmup=10)
    finally:
        for s in servers.values():
            s.stop()
    results["latency"] = {"candidates": args.candidates, "requests": args.requests,
                          "models": latency}
    if "urm" in latency:
        results["latency"]["grace_over_urm_p50"] = round(
            latency["grace"]["p50_ms"] / latency["urm"]["p50_ms"], 3)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_root", required=True,
                        help="The search world's folder (dataset/, examples/, graph/, "
                        "graph_embeddings/; built where missing).")
    parser.add_argument("--scale", default="demo", help="Search world scale if it is built.")
    parser.add_argument("--world_seed", type=int, default=0)
    parser.add_argument("--preset", default="demo", help="Training preset.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    parser.add_argument("--variant", type=parse_variant, action="append", default=[],
                        help="table2: an extra row, LABEL=EXPERIMENT:OVERRIDES (repeatable), "
                        "e.g. 'GRACE, no alignment=grace:model.grace.alignment_weight=0'.")
    parser.add_argument("--candidates", type=int, default=1000,
                        help="latency: candidates per request (default %(default)s).")
    parser.add_argument("--requests", type=int, default=200,
                        help="latency: timed sequential requests per model.")
    parser.add_argument("--workers", type=int, default=4, help="latency: server threads.")
    parser.add_argument("--urm_run", default="", help="latency: a trained URM run folder "
                        "(runs/demo/train/demo_urm) to compare with.")
    parser.add_argument("--work_dir", default="", help="Where runs go (<run_root>/grace).")
    parser.add_argument("--verbose", type=int, default=0)
    parser.add_argument("--out", default=common.result_path("grace"))
    args = parser.parse_args(argv)
    args.work_dir = args.work_dir or os.path.join(args.run_root, "grace")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    paths = prepare(args)
    results = {"run_root": args.run_root, "preset": args.preset, "seeds": args.seeds,
               "rows": []}
    rows = []
    if {"table1", "table3", "longtail"} & set(args.parts):
        rows += TABLE1
    if "table2" in args.parts:
        rows += [r for r in TABLE2 if r not in rows]
        rows += [(label, experiment, overrides) for label, experiment, _, overrides
                 in args.variant]
    run_tables(args, paths, results, rows)
    if {"table1", "table3", "longtail"} & set(args.parts):
        results["table1"] = auc_table(results, TABLE1, "PLE")
        print(results["table1"])
    if "table2" in args.parts:
        results["table2"] = auc_table(results, list(TABLE2) + [
            v[:2] for v in args.variant], "GRACE")
        results["hash_collisions"] = hash_collisions(args, paths)
        print(results["table2"], results["hash_collisions"], sep="\n")
    if {"table3", "longtail"} & set(args.parts):
        cons = consistency(results, CONSISTENCY_ROWS + tuple(v[0] for v in args.variant))
        results["consistency"] = cons
        results["table3"] = recall_table(cons)
        results["tail_recall"] = recall_table(cons, "tail_recall")
        results["tail_auc"] = {k: {"auc": _mean(v["tail_auc"]), "examples": v["tail_examples"],
                                   "clicks": v["tail_clicks"]} for k, v in cons.items()}
        print(results["table3"], results["tail_recall"], results["tail_auc"], sep="\n")
    if "latency" in args.parts:
        run_latency(args, paths, results)
        print(results["latency"])
    results["machine"] = common.machine()
    common.write_result(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
