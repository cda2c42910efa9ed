"""The end-to-end demo on the embedded synthetic world (``make demo``).

    python -m ppm.demo [--run_dir runs/demo] [--scale demo] [--seed 0]

Stages, each also a command of its own (see the README); a stage whose output is present and
was made from the same inputs is skipped (``--rebuild`` redoes everything):

1. ``python -m ppm.data.synthetic``: generate the synthetic world;
2. ``python -m ppm.data.validate``: validate it;
3. ``python -m beam_jobs.build_examples``: build TFRecord examples with Beam;
4. ``python -m ppm.encoders.train``: fine-tune briefly and export the text encoder
   (all-MiniLM-L6-v2, query matching);
5. the same for the image encoder (small ResNet, entity prediction);
6. ``python -m beam_jobs.embed_items``: cache the title and image embeddings of every item,
   then print a summary: counts per window, CTR, share of test events on cold items, encoders;
7. ``python -m ppm.train --experiment ppm_pretrain``: pre-train PPM on the pretrain window;
8. ``python -m ppm.train --experiment urm``: train URM (the PPM plug-in fine-tuned) on
   train_large;
9. evaluate it on the test day and print the metrics;
10. ``python -m ppm.export``: export it to ``saved_models/urm/<version>``;
11. serve it with the local TF Serving gRPC server and rank one request through the client.

The console shows one numbered line per stage (``[i/N]``, :mod:`ppm.console`), progress bars
in a terminal, the tables and where to look next; the output of the libraries (TensorFlow, absl,
Beam, Python warnings) and ppm's own INFO records go to ``<run_dir>/demo.log`` (``--verbose``:
to the console as well).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time

from ppm import console
from ppm.data import canonical, validate
from ppm.data.synthetic.world import SCALES

logger = logging.getLogger(__name__)


def summary(dataset_dir: str, examples_dir: str) -> str:
    """A human-readable summary of a dataset and its examples."""
    meta = canonical.read_meta(dataset_dir)
    with open(os.path.join(examples_dir, "stats.json")) as f:
        stats = json.load(f)
    lines = [f"Dataset {meta.name} ({dataset_dir})",
             "  " + ", ".join(f"{k}: {v:,}" for k, v in meta.counts.items()),
             f"Examples ({examples_dir}); malformed events: {stats['dead_letter']:,}",
             f"  {'window':<12}{'examples':>10}{'CTR':>8}{'orders':>9}{'carts':>8}"]
    for name, w in stats["windows"].items():
        ctr = f"{w['ctr']:.2%}" if w["ctr"] is not None else "-"
        lines.append(f"  {name:<12}{w['examples']:>10,}{ctr:>8}{w['order']:>9,}"
                     f"{w['cart']:>8,}")
    cold = stats["test_cold_share"]
    lines.append("Test events on cold items (item_freq = target appearances in train_large): "
                 + ", ".join(f"{k}: {v:.1%}" for k, v in cold.items() if v is not None))
    return "\n".join(lines)


DEMO_TASKS = {"text": "qm", "image": "ep"}
PREPARE_STAGES = ("world", "validate", "examples", "text_encoder", "image_encoder", "cache")
TRAIN_STAGES = ("pretrain", "train", "evaluate")
SERVE_STAGES = ("export", "serve")
LOG_FILE = "demo.log"


def build_encoders(dataset: str, run_dir: str, text_steps: int, image_steps: int,
                   rebuild: bool, tiny_text: bool = False) -> dict:
    """Stage 4: fine-tunes and exports both encoders unless done for this dataset."""
    from ppm.encoders import contract

    meta = canonical.read_meta(dataset)
    paths = {}
    for modality, steps in (("text", text_steps), ("image", image_steps)):
        path = os.path.join(run_dir, "encoders", modality)
        paths[modality] = path
        task = DEMO_TASKS[modality]
        try:
            info = contract.read_info(path)
        except FileNotFoundError:
            info = {}
        wanted_preset = "tiny random BERT" if tiny_text and modality == "text" else None
        if not rebuild and (info.get("dataset"), info.get("task"), info.get("steps")) == (
                meta.name, task, steps) and (wanted_preset is None or str(
                    info.get("preset", "")).startswith(wanted_preset)):
            console.stage(f"{modality}_encoder", "Using the existing %s encoder in %s",
                          modality, path)
            continue
        console.stage(f"{modality}_encoder", "Fine-tuning the %s encoder (%s, %d steps) into %s",
                      modality, task, steps, path)
        from ppm.encoders import train  # noqa: PLC0415 - loads Keras 3 and keras-hub

        argv = ["--modality", modality, "--task", task, "--dataset", dataset, "--out", path,
                "--steps", str(steps), "--verbose", "1" if console.interactive() else "0"]
        if tiny_text and modality == "text":
            argv.append("--tiny_text")
        train.run(train.parse_args(argv))
    return paths


def build_cache(dataset: str, encoders: dict, out: str, rebuild: bool) -> bool:
    """Stage 5: the embedding cache, unless present for these very encoders.

    Returns:
      Whether the cache was (re)built.
    """
    from ppm.data import cache
    from ppm.encoders import contract

    try:
        manifest = cache.read_manifest(out)
        current = all(manifest[f"{m}_encoder"]["fingerprint"] == contract.fingerprint(p)
                      for m, p in encoders.items())
    except (FileNotFoundError, KeyError, ValueError):
        current = False
    if current and not rebuild:
        console.stage("cache", "Using the existing embedding cache in %s", out)
        return False
    console.stage("cache", "Caching title and image embeddings with Beam into %s", out)
    from beam_jobs import embed_items  # noqa: PLC0415

    embed_items.run(["--dataset", dataset, "--text_model", encoders["text"], "--image_model",
                     encoders["image"], "--out", out, "--overwrite"])
    return True


def encoder_summary(encoders: dict, embeddings: str) -> str:
    from ppm.data import cache
    from ppm.encoders import contract

    lines = ["Encoders (held-out query -> item retrieval, before -> after fine-tuning):"]
    for modality, path in encoders.items():
        info = contract.read_info(path)
        b, a = info["eval_before"], info["eval_after"]
        lines.append(f"  {modality:5s} {info['task']} {info['steps']} steps: Acc@1 "
                     f"{b['acc@1']:.3f} -> {a['acc@1']:.3f}, Acc@5 {b['acc@5']:.3f} -> "
                     f"{a['acc@5']:.3f} ({path})")
    counts = cache.read_manifest(embeddings)["counts"]
    lines.append(f"Embedding cache ({embeddings}): " + ", ".join(
        f"{k}: {v:,}" for k, v in counts.items()))
    return "\n".join(lines)


def _examples_match(dataset: str, examples: str) -> bool:
    """Whether ``examples`` were built from this very dataset (source and counts)."""
    path = os.path.join(examples, "stats.json")
    if not os.path.exists(path):
        return False
    with open(path) as f:
        stats = json.load(f)
    meta = canonical.read_meta(dataset)
    return (stats.get("dataset_source"), stats.get("dataset_counts")) == (meta.source,
                                                                          meta.counts)


def prepare(run_dir: str = "runs/demo", scale: str = "demo", seed: int = 0,
            beam_workers: int = os.cpu_count() or 1, text_steps: int = 60,
            image_steps: int = 150, tiny_text: bool = False, rebuild: bool = False) -> dict:
    """Stages 1-6 (world, validation, examples, encoders, cache), each skipped when current.

    When the cache is rebuilt (new world or new encoders), earlier training runs under
    ``<run_dir>/train`` are
    deleted: they were trained on other data and would otherwise be resumed.

    Returns:
      ``{"dataset", "examples", "encoders", "embeddings"}`` paths.
    """
    dataset = os.path.join(run_dir, "dataset")
    examples = os.path.join(run_dir, "examples")

    from ppm.data import synthetic  # noqa: PLC0415 - heavy, only when needed

    wanted = {"scale": scale, "seed": seed}
    existing = None
    if os.path.exists(os.path.join(dataset, canonical.DATASET_FILE)):
        extra = canonical.read_meta(dataset).extra
        existing = {k: extra.get(k) for k in wanted}
    generated = rebuild or existing != wanted
    if generated:
        if existing is not None:
            logger.warning("%s holds the world %s, not %s: regenerating", dataset, existing,
                           wanted)
        console.stage("world", "Generating the synthetic world (%s) in %s", scale, dataset)
        synthetic.generate(dataset, scale, seed, progress=console.interactive())
    else:
        console.stage("world", "Using the existing world in %s", dataset)
    console.stage("validate", "Validating %s", dataset)
    report = validate.check_dataset(dataset)
    for w in report.warnings:
        logger.warning("%s", w)
    if generated or not _examples_match(dataset, examples):
        console.stage("examples", "Building examples with Beam into %s", examples)
        from beam_jobs import build_examples  # noqa: PLC0415

        beam_flags = []
        if beam_workers > 1:
            beam_flags = ["--direct_num_workers", str(beam_workers),
                          "--direct_running_mode", "multi_processing"]
        build_examples.run(["--dataset", dataset, "--out", examples, "--num_shards", "4",
                            "--overwrite"] + beam_flags)
    else:
        console.stage("examples", "Using the existing examples in %s", examples)
    encoders = build_encoders(dataset, run_dir, text_steps, image_steps,
                              rebuild or generated, tiny_text)
    embeddings = os.path.join(run_dir, "embeddings")
    if build_cache(dataset, encoders, embeddings, rebuild or generated):
        train_dir = os.path.join(run_dir, "train")
        if os.path.isdir(train_dir):
            logger.warning("Deleting %s: its runs were trained on the previous data",
                           train_dir)
            shutil.rmtree(train_dir)
    return {"dataset": dataset, "examples": examples, "encoders": encoders,
            "embeddings": embeddings}


def serve(run_dir: str, urm_run: str, saved_models: str, num_candidates: int = 20,
          top: int = 10) -> dict:
    """Stages 10-11: exports the URM (unless its checkpoint is exported already), starts the
    local TF Serving API server on a free loopback port, ranks one request through gRPC with
    the client, prints the top candidates and stops the server. Returns the client's result."""
    from ppm import export
    from ppm.serving import client, requests, servables, server

    model_dir = os.path.join(saved_models, "urm")
    version_dir = export.latest_export(urm_run, model_dir)
    if version_dir is None:
        console.stage("export", "Exporting %s as a SavedModel into %s", urm_run, model_dir)
        version_dir = export.export(urm_run, "urm", saved_models)
    else:
        console.stage("export", "Using the existing export %s of %s", version_dir, urm_run)
    version = int(os.path.basename(version_dir))
    console.stage("serve", "Serving %s over gRPC (ppm.serving.server) and ranking one request",
                  version_dir)
    request = requests.sample_ranking_request(
        os.path.join(run_dir, "examples"), os.path.join(run_dir, "dataset", "items.parquet"),
        num_candidates=num_candidates)
    with server.Server([servables.model_config("urm", model_dir, [version])], port=0,
                       host="127.0.0.1", poll_seconds=0) as srv, \
            client.Client(srv.target, "urm") as c:
        result = c.rank(request)
    print(f"\nRanking request through gRPC ({srv.target}, model urm version {c.last_version}): "
          f"one test user with {request['user']['hist_len']} history items, "
          f"{num_candidates} random catalogue items, best first by p_click")
    print(client.format_ranking(result, top))
    return result


def next_steps(args, log_file: str, seconds: float) -> str:
    """Where to look after the demo: the run folder, the log file and the next commands."""
    run = args.run_dir
    urm = os.path.join(run, "train", f"{args.preset}_urm")
    lines = [f"\nDone in {seconds / 60:.1f} min. Everything is in {run}/ (dataset, examples, "
             "encoders, embeddings, train); library output in " + log_file + ".", "Next:"]
    if not args.skip_training:
        lines += [f"  tensorboard --logdir {os.path.join(run, 'train')}   # training curves",
                  f"  python -m ppm.evaluate --run {urm}   # the table above again"]
    if not (args.skip_training or args.skip_serving):
        if os.path.normpath(args.saved_models) == "saved_models":
            lines.append("  make serve   # serve saved_models/ on gRPC port 8500 "
                         "(serving_config/models.config)")
        else:
            base = os.path.join(args.saved_models, "urm")
            lines.append("  python -m ppm.serving.server --model_config_file CONFIG   # a "
                         f"models.config whose base_path is {base}")
    lines.append("  python -m ppm.demo --verbose   # this demo with the library output on the "
                 "console")
    return "\n".join(lines)


def stage_keys(args) -> list[str]:
    """The demo's stages, in order (one ``[i/N]`` counter, :mod:`ppm.console`)."""
    keys = list(PREPARE_STAGES)
    if not args.skip_training:
        keys += TRAIN_STAGES
        if not args.skip_serving:
            keys += SERVE_STAGES
    return keys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ppm.demo",
        description="Run the pipeline end to end on the synthetic world: generate, validate, "
        "build examples with Beam (DirectRunner), fine-tune and export the encoders, cache "
        "the item embeddings with Beam, pre-train PPM, train and evaluate the URM, export it and "
        "rank one request through the local TF Serving gRPC server.")
    parser.add_argument("--run_dir", default="runs/demo", help="Where everything is written "
                        "(dataset/ and examples/ inside).")
    parser.add_argument("--scale", default="demo", choices=sorted(SCALES),
                        help="Synthetic world scale.")
    parser.add_argument("--seed", type=int, default=0, help="Synthetic world seed.")
    parser.add_argument("--beam_workers", type=int, default=os.cpu_count() or 1,
                        help="DirectRunner worker processes for the Beam job (default: the "
                        "number of CPUs; 1 runs in this process).")
    parser.add_argument("--text_steps", type=int, default=60,
                        help="Query-matching steps of the text encoder.")
    parser.add_argument("--image_steps", type=int, default=150,
                        help="Entity-prediction steps of the image encoder.")
    parser.add_argument("--tiny_text", action="store_true",
                        help="A tiny random BERT instead of all-MiniLM-L6-v2 (fast smoke runs).")
    parser.add_argument("--rebuild", action="store_true",
                        help="Regenerate the world and rebuild the examples even if present.")
    parser.add_argument("--preset", default="demo", choices=["demo", "tiny"],
                        help="Training preset of stages 7-9 (tiny: a smoke run).")
    parser.add_argument("--skip_training", action="store_true",
                        help="Stop after the embedding cache (stages 1-6).")
    parser.add_argument("--saved_models", default="saved_models",
                        help="Where stage 10 exports the URM (what serving_config/models.config "
                        "serves).")
    parser.add_argument("--skip_serving", action="store_true",
                        help="Stop after training and evaluation (stages 1-9).")
    parser.add_argument("--verbose", action="store_true",
                        help="Show the libraries' output (TensorFlow, absl, Beam, warnings) "
                        "and every INFO record on the console too.")
    parser.add_argument("--log_file", default=None,
                        help=f"Where the libraries' output goes (default: <run_dir>/{LOG_FILE}).")
    args = parser.parse_args(argv)
    log_file = args.log_file or os.path.join(args.run_dir, LOG_FILE)
    started = time.perf_counter()
    with console.session(log_file, args.verbose):
        logging.getLogger("apache_beam").setLevel(logging.WARNING)  # per-bundle INFO records
        try:
            with console.plan(stage_keys(args)):
                rc = _run(args)
        except BaseException:  # the traceback follows on the console, once stderr is back
            print(f"The demo failed; the libraries' output is in {log_file}")
            raise
    if rc == 0:
        print(next_steps(args, log_file, time.perf_counter() - started))
    return rc


def _run(args) -> int:
    paths = prepare(args.run_dir, args.scale, args.seed, args.beam_workers, args.text_steps,
                    args.image_steps, args.tiny_text, args.rebuild)
    print(summary(paths["dataset"], paths["examples"]))
    print(encoder_summary(paths["encoders"], paths["embeddings"]))
    if args.skip_training:
        return 0
    urm_run = train_urm(args.run_dir, args.preset)
    if args.skip_serving:
        return 0
    serve(args.run_dir, urm_run, args.saved_models)
    return 0


def train_urm(run_dir: str, preset: str) -> str:
    """Stages 7-9: pre-trains PPM, trains URM with it fine-tuned, evaluates; returns the URM
    run folder. Finished runs are kept (a rerun resumes or skips them)."""
    from ppm import configs, train  # noqa: PLC0415 - heavy

    root = os.path.join(run_dir, "train")
    ppm = configs.resolve("ppm_pretrain", preset, validate=False)
    ppm.override({"data": configs.data_paths(run_dir)})
    ppm_run = os.path.join(root, f"{preset}_ppm_pretrain")
    console.stage("pretrain", "Pre-training PPM (ID-free, %s window) in %s",
                  ppm.data.train_window, ppm_run)
    train.train(ppm, ppm_run)
    urm = configs.resolve("urm", preset, validate=False)
    urm.override({"data": configs.data_paths(run_dir),
                  "model": {"plugin": {"checkpoint": ppm_run}}})
    urm_run = os.path.join(root, f"{preset}_urm")
    train.train_and_evaluate(urm, urm_run)
    return urm_run


if __name__ == "__main__":
    sys.exit(main())
