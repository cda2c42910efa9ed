"""Benchmark: ranking-request latency over gRPC, with and without PPM, and without the cache.

In one run, each model served by its own local TF Serving API server process
(``ppm.serving.server``) on loopback, queried by gRPC clients in this process:

- (a) ``urm``: URM with the PPM plug-in and the cached title/image embeddings (what ships);
- (b) ``urm_wo_ppm``: URM without PPM (ids only);
- (c) ``urm_uncached``: (a) with the text and image encoders run in the request path instead of
  the cache (:mod:`ppm.serving.uncached`; same scores, checked here).

One ranking request = one real test user with a 50-item history and 200 random catalogue
items (:func:`ppm.serving.requests.sample_ranking_request`), built once; the timed call is the
gRPC ``Predict`` (the client's request building is timed separately). Reported: p50/p99 latency
of sequential requests (a and b interleaved, so drift hits both), the ratios a/b (PPM's claim:
close to 1) and c/a (what caching saves), throughput at 1, 4 and 16 concurrent clients for (a)
and (b), the exported model sizes, and each server's resident memory before and after its
version is loaded. The server and the clients share this machine's cores. Last, without gRPC:
the signature's latency for (a) and (b) at the ``demo`` and ``paper`` dimensions (random
weights), with and without XLA, and the time of the ID and PPM sequence modules alone.

Rows-per-request sweep (:func:`rows_sweep`): (a)'s warm-up request tiled to 100 ... 20,000 rows
(``--sweep_rows``), sent through gRPC to a fresh server (``--max_rows_per_request`` raised to
the largest size), ``--sweep_repeats`` timed calls per size after one untimed call; reported
per size: median latency, ms per row, and the server's RSS (``/proc/PID/status`` VmRSS) before
the size's first call and after its last. TF Serving's batching (``serving_config/
batching.config``) merges up to 2,048 rows, so these sizes are real.

Run (after ``make demo``; trains ``urm_wo_ppm`` with the demo preset if it is missing)::

    .venv/bin/python benchmarks/serving_latency.py --run_root runs/demo

Only the sweep, on any exported model's base path (no run folder needed)::

    .venv/bin/python benchmarks/serving_latency.py --sweep_only saved_models/urm

Writes ``benchmarks/results/serving_latency.json`` (``serving_rows_sweep.json`` with
``--sweep_only``).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ppm  # noqa: E402,F401
from benchmarks import common  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("urm", "urm_wo_ppm", "urm_uncached")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def dir_mb(path: str) -> float:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path)
               for f in fs) / 2**20


class ServerProcess:
    """``python -m ppm.serving.server`` serving one model folder (or nothing), on a free port."""

    def __init__(self, name: str, base_path: str, workdir: str, workers: int,
                 extra_args=(), ready: bool = True):
        config = os.path.join(workdir, f"{name}.config")
        with open(config, "w") as f:
            f.write(f'model_config_list {{ config {{ name: "{name}" base_path: "{base_path}" '
                    'model_platform: "tensorflow" } }\n')
        self.log = open(os.path.join(workdir, f"{name}.log"), "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ppm.serving.server", "--model_config_file", config,
             "--port", "0", "--host", "127.0.0.1", "--file_system_poll_wait_seconds",
             "0" if ready else "1", "--max_workers", str(workers),
             "--max_concurrent_rpcs", "256", *extra_args],
            stdout=subprocess.PIPE, stderr=self.log, text=True, cwd=REPO)
        from ppm.serving import server

        if not ready:  # no version: the server waits for one (as TF Serving) and never serves
            while "No versions of servable" not in _read(self.log.name):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server {name} exited; see {self.log.name}")
                time.sleep(0.2)
            self.target = None
            return
        line = ""
        while server.READY_LINE not in line:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"server {name} exited; see {self.log.name}")
        port = re.search(r":(\d+) ", line).group(1)
        self.target = f"127.0.0.1:{port}"

    def rss(self) -> float:
        return common.rss_mb(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()


def warmup_request(version_dir: str):
    """The first warm-up PredictRequest of an exported version."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from ppm.serving import servables

    path = os.path.join(version_dir, servables.WARMUP_PATH)
    raw = next(iter(tf.data.TFRecordDataset(path))).numpy()
    return prediction_log_pb2.PredictionLog.FromString(raw).predict_log.request


def tiled_request(request, rows: int):
    """``request`` with every input's rows repeated to ``rows`` (first dimension)."""
    import tensorflow as tf

    from ppm.serving import client

    feats = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
    feats = {k: np.resize(v, (rows, *v.shape[1:])) for k, v in feats.items()}
    return client.predict_request(request.model_spec.name, feats)


def rows_sweep(base_path: str, name: str, workdir: str, sizes, repeats: int,
               workers: int, server_args=()) -> dict:
    """Per-row cost and server RSS over request sizes, through gRPC (see the module doc)."""
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from ppm.serving import client, servables

    version = max(servables.available_versions(base_path))
    base = warmup_request(os.path.join(base_path, str(version)))
    base.model_spec.name = f"{name}_sweep"  # the sweep server's model name
    proc = ServerProcess(f"{name}_sweep", base_path, workdir, workers,
                         ["--max_rows_per_request", str(max(sizes)), *server_args])
    rows = []
    try:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(client.channel(proc.target))
        start_mb = proc.rss()
        for n in sizes:
            request = tiled_request(base, n)
            before = proc.rss()
            stub.Predict(request, timeout=600)  # first call at this size, untimed
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                stub.Predict(request, timeout=600)
                times.append(time.perf_counter() - t)
            ms = float(np.median(times)) * 1000
            rows.append({"rows": n, "request_mb": round(request.ByteSize() / 2**20, 2),
                         "median_ms": round(ms, 2), "ms_per_row": round(ms / n, 4),
                         "rss_before_mb": round(before, 1),
                         "rss_after_mb": round(proc.rss(), 1)})
            logging.info("sweep %s", rows[-1])
    finally:
        proc.stop()
    return {"model": name, "version": version, "repeats": repeats, "workers": workers,
            "server_args": list(server_args),
            "server_rss_at_start_mb": round(start_mb, 1), "sizes": rows}


def percentiles(seconds) -> dict:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "mean_ms": round(float(ms.mean()), 2), "requests": int(ms.size)}


def sequential(stubs: dict, request_of: dict, n: int, warmup: int) -> dict:
    """Latency of ``n`` sequential requests per model, the models interleaved."""
    times = {m: [] for m in stubs}
    order = list(stubs)
    for i in range(warmup + n):
        for m in (order if i % 2 == 0 else order[::-1]):
            t = time.perf_counter()
            stubs[m].Predict(request_of[m], timeout=600)
            if i >= warmup:
                times[m].append(time.perf_counter() - t)
    return {m: percentiles(t) for m, t in times.items()}


def throughput(target: str, request, clients: int, seconds: float) -> dict:
    """Requests/s with ``clients`` concurrent closed-loop clients (one channel each)."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from ppm.serving import client

    stop, start = threading.Event(), threading.Barrier(clients + 1)
    times, errors = [], []

    def run():
        channel = client.channel(target)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        stub.Predict(request, timeout=600)
        start.wait()
        while not stop.is_set():
            t = time.perf_counter()
            try:
                stub.Predict(request, timeout=600)
                times.append((t, time.perf_counter() - t))
            except grpc.RpcError as e:
                errors.append(e.code().name)
        channel.close()

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    done = [d for s, d in times if s + d <= t0 + seconds]
    candidates = len(request.inputs["item_id"].string_val) or int(
        request.inputs["item_id"].tensor_shape.dim[0].size)
    return {"clients": clients, "requests_per_s": round(len(done) / seconds, 2),
            "candidates_per_s": round(len(done) * candidates / seconds, 1),
            **{k: v for k, v in percentiles(done or [0]).items()
               if k != "requests"}, "errors": len(errors)}


def ranking_features(ranking: dict, schema) -> dict:
    """The pointwise inputs (numpy, one row per candidate) of ``ranking`` for a model whose
    serving schema is ``schema``, as the client builds them from the signature."""
    from ppm import export
    from ppm.serving import client

    spec = {k: (v.dtype, [-1] * len(v.shape))
            for k, v in export.input_signature(schema).items()}
    return client.ranking_features(ranking, spec)


def in_process(run_root: str, presets: list[str], ranking: dict, n: int) -> dict:
    """Signature-only latency (no gRPC) of (a) and (b) built at each preset's dimensions with
    random weights (latency does not depend on them), with and without XLA for the dense
    blocks, and the time of the two sequence modules alone: where (a)'s extra time goes."""
    import tensorflow as tf

    from ppm import configs, export
    from ppm.models import factory

    def median_ms(fn, feats):
        for _ in range(5):
            fn(feats)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn(feats)
            times.append(time.perf_counter() - t)
        return round(float(np.median(times)) * 1000, 2)

    out = {}
    for preset in presets:
        row = {}
        for name, experiment in (("urm", "urm_ppm_random"), ("urm_wo_ppm", "urm_wo_ppm")):
            config = configs.resolve(experiment, preset, validate=False)
            config.override({"data": configs.data_paths(run_root)})
            inputs = factory.load_inputs(config)
            schema = export.serving_schema(factory.build_model(config, inputs), inputs.schema)
            feats = {k: tf.constant(v) for k, v in ranking_features(ranking, schema).items()}
            for xla in (False, True):
                model = factory.build_model(config, inputs)
                model(factory.dummy_features(inputs.schema))
                if xla:
                    model.enable_xla()
                module = export.ServingModule(model, export.serving_schema(model, inputs.schema))
                row[name + ("_xla" if xla else "")] = median_ms(module.serve, feats)
                if name == "urm" and not xla:
                    row["idsm_module"] = median_ms(tf.function(model.idsm), feats)
                    row["ppm_module"] = median_ms(tf.function(model.ppm), feats)
        row["ratio_a_over_b"] = round(row["urm"] / row["urm_wo_ppm"], 3)
        row["ratio_a_over_b_xla"] = round(row["urm_xla"] / row["urm_wo_ppm_xla"], 3)
        out[preset] = row
    return out


def breakdown(run: str, ranking: dict, n: int) -> dict:
    """Where a trained model's time goes on ``ranking``, in process (no gRPC; the model as
    exported, item tokens folded): the median ms of both signatures and, for URM, of its parts
    on the request's rows (pointwise features, as the listwise signature builds them): IDSM, the
    plug-in, the multi-task head on the precomputed representation. Every function is timed
    ``n`` times, all interleaved. ``listwise_unfolded``: the listwise signature without the
    item tokens folded into the cache (``ppm.export --no_fold_items``), where there is a fold."""
    import tensorflow as tf

    from ppm import evaluate, export
    from ppm.models import modules

    model, inputs, _ = evaluate.load_model(run)
    folded = modules.fold_item_tokens(model)
    schema = export.serving_schema(model, inputs.schema)
    module = export.ServingModule(model, schema)
    feats = ranking_features(ranking, schema)
    listwise = {k: tf.constant(v) for k, v in export.listwise_inputs(feats, schema).items()}
    pointwise = {k: tf.constant(v) for k, v in feats.items()}
    rows = module.model_features(pointwise)
    calls = {"listwise": (module.rank_listwise, listwise), "pointwise": (module.serve, pointwise)}
    if folded:  # the same model with its item tokens computed live
        live = export.ServingModule(evaluate.load_model(run)[0], schema)
        calls["listwise_unfolded"] = (live.rank_listwise, listwise)
    if all(hasattr(model, a) for a in ("idsm", "mmoe", "representation")):
        calls["idsm"] = (tf.function(lambda f: model.idsm(model.id_side(f), training=False)),
                         rows)
        if model.ppm is not None:
            calls["plugin"] = (tf.function(lambda f: model.ppm(f, training=False)), rows)
        calls["head"] = (tf.function(lambda x: model.mmoe(x, training=False)),
                         model.representation(rows, training=False))
    times = {name: [] for name in calls}
    for i in range(n + 5):
        for name, (fn, x) in calls.items():
            t = time.perf_counter()
            fn(x)
            if i >= 5:  # the first calls trace
                times[name].append(time.perf_counter() - t)
    return {f"{name}_ms": round(float(np.median(t)) * 1000, 2) for name, t in times.items()}


def ensure_wo_ppm(run_root: str, preset: str) -> str:
    run = os.path.join(run_root, "train", f"{preset}_urm_wo_ppm")
    if not os.path.exists(os.path.join(run, "checkpoints")):
        from ppm import train

        logging.info("Training urm_wo_ppm (%s preset) in %s", preset, run)
        train.main(["--experiment", "urm_wo_ppm", "--preset", preset, "--run_root", run_root,
                    "--no_eval", "--model_dir", run])
    return run


def exports(run_root: str, urm_run: str, wo_ppm_run: str, base: str) -> dict:
    from ppm import export
    from ppm.serving import uncached

    out = {}
    for name, run in (("urm", urm_run), ("urm_wo_ppm", wo_ppm_run)):
        out[name] = (export.latest_export(run, os.path.join(base, name))
                     or export.export(run, name, base))
    folder = os.path.join(base, "urm_uncached")
    done = [v for v in (os.listdir(folder) if os.path.isdir(folder) else []) if v.isdigit()]
    out["urm_uncached"] = os.path.join(folder, max(done, key=int)) if done else \
        uncached.export_uncached(urm_run, "urm_uncached", base,
                                 os.path.join(run_root, "encoders", "text"),
                                 os.path.join(run_root, "encoders", "image"),
                                 os.path.join(run_root, "dataset", "items.parquet"))
    return out


def parse_pair(text: str) -> tuple[str, str, str]:
    """``"LABEL=A_RUN,B_RUN"`` -> (label, a, b)."""
    label, sep, runs = text.partition("=")
    a, comma, b = runs.partition(",")
    if not sep or not comma or not label or not a or not b:
        raise argparse.ArgumentTypeError(f"--pair {text!r}: expected LABEL=A_RUN,B_RUN")
    return label, a, b


def pairs(args) -> dict:
    """Each ``--pair``'s (a) and (b) served by their own server processes, one ranking request
    of ``--candidates`` candidates for every model, sequential latency with every model
    interleaved, throughput at ``--clients``, and the ratios a/b per pair."""
    import tensorflow as tf

    from ppm import export
    from ppm.serving import requests

    workdir = os.path.abspath(os.path.join(args.run_root, "serving_benchmark"))
    os.makedirs(workdir, exist_ok=True)
    runs = {f"{label}_{side}": run for label, a, b in args.pair
            for side, run in (("a", a), ("b", b))}
    ranking = requests.sample_ranking_request(
        os.path.join(args.run_root, "examples"),
        os.path.join(args.run_root, "dataset", "items.parquet"), args.candidates, args.history)
    in_process = ({name: breakdown(run, ranking, args.breakdown_requests)
                   for name, run in runs.items()} if args.breakdown_requests else {})
    servers, stubs, request_of, build, size = {}, {}, {}, {}, {}
    try:
        for name, run in runs.items():
            base = os.path.join(workdir, "saved_models")
            version = (export.latest_export(run, os.path.join(base, name))
                       or export.export(run, name, base))
            servers[name], stub, forms = start_server(name, version, workdir, args.workers,
                                                      ranking, listwise=True)
            for form, (request, seconds) in forms.items():
                key = f"{name}/{form}"
                stubs[key], request_of[key] = stub, request
                build[key] = round(seconds * 1000, 2)
                size[key] = request.ByteSize()
        latency = sequential(stubs, request_of, args.requests, warmup=20)
        load = {m: [throughput(servers[m.split("/")[0]].target, request_of[m], int(k),
                               args.seconds) for k in args.clients.split(",")]
                for m in request_of}
    finally:
        for srv in servers.values():
            srv.stop()
    ratios = {f"{label}/{form}": {q: round(latency[f"{label}_a/{form}"][f"{q}_ms"]
                                           / latency[f"{label}_b/{form}"][f"{q}_ms"], 3)
                                  for q in ("p50", "p99")}
              for label, _, _ in args.pair for form in ("pointwise", "listwise")}
    return {"runs": runs, "candidates": args.candidates, "history": ranking["user"]["hist_len"],
            "request_bytes": size, "client_build_ms": build, "latency": latency,
            "ratio_a_over_b": ratios, "throughput": load, "in_process": in_process,
            "tensorflow": tf.__version__}


def start_server(name: str, version_dir: str, workdir: str, workers: int, ranking: dict,
                 listwise: bool = False):
    """A server process for one exported version, its stub, and ``{form: (PredictRequest,
    client build seconds)}`` of ``ranking`` (``pointwise``, and ``listwise`` if asked), each
    sent once untimed."""
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from ppm.serving import client

    srv = ServerProcess(name, os.path.dirname(version_dir), workdir, workers)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(client.channel(srv.target))
    forms = {}
    with client.Client(srv.target, name) as c:
        t = time.perf_counter()
        feats = client.ranking_features(ranking, c.signature_inputs())
        forms["pointwise"] = (client.predict_request(name, feats), time.perf_counter() - t)
        if listwise:
            t = time.perf_counter()
            inputs = c.listwise_features(ranking)
            forms["listwise"] = (client.predict_request(name, inputs,
                                                        client.LISTWISE_SIGNATURE),
                                 time.perf_counter() - t)
    for request, _ in forms.values():
        stub.Predict(request, timeout=600)  # first call
    return srv, stub, forms


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_root", default="runs/demo")
    parser.add_argument("--preset", default="demo", help="Preset of the trained runs.")
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--requests", type=int, default=300,
                        help="Timed sequential requests for (a) and (b).")
    parser.add_argument("--uncached_requests", type=int, default=20,
                        help="Timed sequential requests for (c) (seconds each on a CPU).")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="Duration of each throughput measurement.")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--workers", type=int, default=16, help="Server request threads.")
    parser.add_argument("--in_process_presets", default="demo,paper",
                        help="Presets of the in-process breakdown ('' to skip).")
    parser.add_argument("--sweep_rows", default="100,500,2000,4000,8000,20000",
                        help="Rows per request of the sweep ('' to skip).")
    parser.add_argument("--sweep_repeats", type=int, default=5,
                        help="Timed calls per sweep size.")
    parser.add_argument("--sweep_trim_memory_above_rows", type=int, default=None,
                        help="The sweep server's --trim_memory_above_rows (0: never trim; "
                             "default: the server's).")
    parser.add_argument("--sweep_only", metavar="BASE_PATH",
                        help="Only the rows sweep, on this exported model's base path.")
    parser.add_argument("--out", default=None, help="Result JSON (default: "
                        "benchmarks/results/serving_latency.json or serving_rows_sweep.json).")
    parser.add_argument("--pair", type=parse_pair, action="append", default=[],
                        help="Only compare pairs of trained runs, LABEL=A_RUN,B_RUN "
                        "(repeatable; e.g. 'history=URM_RUN,URM_WO_PPM_RUN'), on a request "
                        "from --run_root's examples and catalogue.")
    parser.add_argument("--breakdown_requests", type=int, default=200,
                        help="With --pair: timed in-process calls of each model's signatures "
                        "and parts (IDSM, plug-in, head) before serving (0 to skip).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.pair:
        result = {"machine": common.machine(), "pairs": pairs(args)}
        common.write_result(args.out or common.result_path("serving_pairs"), result)
        common.print_result(result)
        return 0
    import grpc
    import tensorflow as tf

    sizes = [int(n) for n in args.sweep_rows.split(",") if n]
    trim = () if args.sweep_trim_memory_above_rows is None else (
        "--trim_memory_above_rows", str(args.sweep_trim_memory_above_rows))
    if args.sweep_only:
        import tempfile

        with tempfile.TemporaryDirectory() as workdir:
            sweep = rows_sweep(args.sweep_only, "urm", workdir, sizes, args.sweep_repeats,
                               args.workers, trim)
        result = {"machine": common.machine(tensorflow=tf.__version__, grpc=grpc.__version__),
                  "rows_sweep": sweep}
        common.write_result(args.out or common.result_path("serving_rows_sweep"), result)
        common.print_result(result)
        return 0

    from ppm.serving import requests

    workdir = os.path.abspath(os.path.join(args.run_root, "serving_benchmark"))
    os.makedirs(workdir, exist_ok=True)
    urm_run = os.path.join(args.run_root, "train", f"{args.preset}_urm")
    folders = exports(args.run_root, urm_run, ensure_wo_ppm(args.run_root, args.preset),
                      os.path.join(workdir, "saved_models"))
    ranking = requests.sample_ranking_request(
        os.path.join(args.run_root, "examples"),
        os.path.join(args.run_root, "dataset", "items.parquet"), args.candidates, args.history)

    baseline = ServerProcess("empty", os.path.join(workdir, "no_such_model"), workdir,
                             args.workers, ready=False)
    memory = {"server_without_model_mb": round(baseline.rss(), 1)}
    baseline.stop()
    servers, stubs, request_of, build = {}, {}, {}, {}
    try:
        for name in MODELS:
            servers[name], stubs[name], forms = start_server(name, folders[name], workdir,
                                                             args.workers, ranking)
            request_of[name], build[name] = forms["pointwise"]
            memory[name] = {"model_mb": round(dir_mb(folders[name]), 1),
                            "server_rss_mb": round(servers[name].rss(), 1)}
        outputs = {m: tf.make_ndarray(stubs[m].Predict(request_of[m], timeout=600)
                                      .outputs["p_click"]) for m in MODELS}
        same = float(np.abs(outputs["urm"] - outputs["urm_uncached"]).max())
        latency = sequential({m: stubs[m] for m in ("urm", "urm_wo_ppm")}, request_of,
                             args.requests, warmup=20)
        latency["urm_uncached"] = sequential({"urm_uncached": stubs["urm_uncached"]},
                                             request_of, args.uncached_requests,
                                             warmup=2)["urm_uncached"]
        load = {m: [throughput(servers[m].target, request_of[m], int(k), args.seconds)
                    for k in args.clients.split(",")] for m in ("urm", "urm_wo_ppm")}
        for name in MODELS:
            memory[name]["server_rss_after_runs_mb"] = round(servers[name].rss(), 1)
            memory[name]["rss_per_loaded_version_mb"] = round(
                memory[name]["server_rss_mb"] - memory["server_without_model_mb"], 1)
    finally:
        for s in servers.values():
            s.stop()
    sweep = rows_sweep(os.path.dirname(folders["urm"]), "urm", workdir, sizes,
                       args.sweep_repeats, args.workers, trim) if sizes else None
    breakdown = in_process(args.run_root, [p for p in args.in_process_presets.split(",") if p],
                           ranking, n=30)
    a, b, c = (latency[m] for m in MODELS)
    result = {
        "machine": common.machine(tensorflow=tf.__version__, grpc=grpc.__version__),
        "request": {"candidates": args.candidates,
                    "history": ranking["user"]["hist_len"],
                    "bytes": request_of["urm"].ByteSize(),
                    "client_build_ms": {m: round(v * 1000, 2) for m, v in build.items()}},
        "latency": latency,
        "ratio_a_over_b": {"p50": round(a["p50_ms"] / b["p50_ms"], 3),
                           "p99": round(a["p99_ms"] / b["p99_ms"], 3)},
        "ratio_c_over_a": {"p50": round(c["p50_ms"] / a["p50_ms"], 1),
                           "p99": round(c["p99_ms"] / a["p99_ms"], 1)},
        "uncached_max_abs_diff_p_click": same,
        "throughput": load,
        "memory": memory,
        "rows_sweep": sweep,
        "in_process_ms": breakdown,
    }
    common.write_result(args.out or common.result_path("serving_latency"), result)
    common.print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
