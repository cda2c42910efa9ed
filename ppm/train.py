"""Train PPM, URM, its ablations, the baseline zoo, Taobao's MAKE and integration methods, GRACE:
``python -m ppm.train``.

    python -m ppm.train                        # the demo URM on the demo's folders (make demo)
    python -m ppm.train --experiment ppm_pretrain --preset paper --model_dir runs/ppm
    python -m ppm.train --experiment urm --preset paper --model_dir runs/urm \\
        --params_override model.plugin.checkpoint=runs/ppm,data.train_window=train_large
    python -m ppm.train --experiment din_ppm   # any model of the zoo, with the PPM plug-in
    python -m ppm.train --experiment make_pretrain   # MAKE (Taobao §4.3), then din_make

Experiments and presets are registered configs (:mod:`ppm.configs`); ``--config_file`` YAML
files and ``--params_override`` change any field, and the resolved config is written to
``<model_dir>/config.yaml``. Training runs under a MirroredStrategy (every local GPU, or the
logical CPUs), or ``multi_worker_mirrored`` across machines through ``TF_CONFIG``.

A run folder holds ``config.yaml``, ``vocab/`` and ``cache.json`` (what the model was built
from), ``checkpoints/`` (every ``trainer.checkpoint_interval`` steps), ``logs/`` (TensorBoard)
and ``train_summary.json``. Restarting a killed run with the same ``--model_dir`` resumes from
its last checkpoint. ``--init_checkpoint`` warm-starts a new run from an earlier one (daily
incremental training, PPM Fig. 3): ID embeddings are remapped by id, so today's vocabulary may
differ from yesterday's.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time

import tensorflow as tf
import tf_keras as keras
from official.modeling import hyperparams, optimization
from official.modeling.optimization import optimizer_factory

from ppm import checkpoints, configs, console, distribute, features
from ppm.data import pipeline
from ppm.models import factory, plugins

logger = logging.getLogger(__name__)
CONFIG_FILE = configs.RUN_CONFIG_FILE
SUMMARY_FILE = "train_summary.json"


def train_files(config) -> list[str]:
    return pipeline.list_files(os.path.join(config.data.examples, config.data.train_window))


def _check_same_run(config, run_dir: str) -> None:
    """Refuses to resume a run folder with a different model or data config."""
    if not tf.io.gfile.exists(os.path.join(run_dir, CONFIG_FILE)):
        return
    old = configs.read_run_config(run_dir).as_dict()
    new = config.as_dict()
    diff = [f"{section}.{k}" for section in ("model", "data") for k in new[section]
            if new[section][k] != old[section][k]]
    if diff:
        raise ValueError(f"{run_dir} holds a run with another config ({', '.join(diff)} "
                         "differ): use a new --model_dir, or delete the old run")


class _CheckpointAndSpeed(keras.callbacks.Callback):
    """Saves a checkpoint after every loop of ``checkpoint_interval`` steps; measures speed."""

    def __init__(self, manager: tf.train.CheckpointManager, examples_per_step: int,
                 after_save=None):
        super().__init__()
        self.manager, self.examples_per_step = manager, examples_per_step
        self.after_save = after_save  # a non-chief worker deletes what it saved
        self.speeds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        steps = self.params.get("steps") or 0
        speed = steps * self.examples_per_step / max(seconds, 1e-9)
        self.speeds.append(speed)
        if logs is not None:
            logs["examples_per_second"] = speed
        path = self.manager.save(checkpoint_number=self.model.optimizer.iterations)
        if self.after_save is not None:
            self.after_save()
            return
        logger.info("Step %d: checkpoint %s (%.0f examples/s)",
                    int(self.model.optimizer.iterations.numpy()), path, speed)


class _Progress(keras.callbacks.Callback):
    """One tqdm bar over the whole run (every ``fit`` loop), on stderr, in a terminal only."""

    def __init__(self, total: int, initial: int, desc: str):
        super().__init__()
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", leave=False,
                        disable=not console.interactive(), file=sys.stderr)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        if logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)


def build(config, inputs, init_checkpoint: str | None = None):
    """Builds the model and optimizer (inside the current strategy scope) and initialises them.

    Order: fresh N(0, s) weights -> ``init_checkpoint`` (warm start) -> the plug-in from
    ``model.plugin.checkpoint`` when ``model.plugin.init`` is ``frozen``/``finetune`` ->
    freezing (:func:`ppm.models.plugins.initialise`).
    """
    model = factory.build_model(config, inputs)
    dummy = factory.dummy_features(inputs.schema)
    model(dummy)
    if init_checkpoint:
        template = factory.build_model(config, factory.template_inputs(inputs, init_checkpoint))
        template(dummy)
        checkpoints.warm_start(model, template, init_checkpoint)
    plugins.initialise(model, config.model.plugin)
    t = config.trainer
    plugin = plugins.prepare_training(model, config.model.plugin,
                                      lambda lr: make_optimizer(t, lr))
    optimizer = make_optimizer(t)
    if t.mixed_precision:
        optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer)
    own = plugin.owns if plugins.PluginTraining.own_optimizer(model) else set()
    optimizer.build([v for v in model.trainable_variables if v.ref() not in own])
    if own:
        plugin.optimizer.build(plugin.variables)
    if t.jit_compile:
        model.enable_xla()
    return model, optimizer


def make_optimizer(trainer, learning_rate=None):
    """The optimizer of ``trainer.optimizer`` (tf-models-official ``OptimizationConfig``).

    A decaying schedule whose ``decay_steps`` is unset (or 0) decays over ``train_steps``.
    ``learning_rate``: ``fn(base rate or schedule) -> rate or schedule`` (a plug-in's own
    optimizer, :class:`~ppm.models.plugins.PluginSchedule`); None: the configured rate.
    The non-legacy Keras 2 optimizers are used (``tf_keras.optimizers.Adam`` and friends), as
    before the optimizer was configurable, so existing checkpoints resume.
    """
    opt = optimization.OptimizationConfig(trainer.optimizer.as_dict())
    lr = opt.learning_rate
    if lr.type and lr.type != "constant":
        schedule = lr.get()
        if hasattr(schedule, "decay_steps") and not schedule.decay_steps:
            schedule.decay_steps = trainer.train_steps
    factory = optimization.OptimizerFactory(opt)
    rate = factory.build_learning_rate()
    if learning_rate is not None:
        rate = learning_rate(rate)
    # tf-models' SGD config carries the legacy ``decay`` argument, which its factory refuses
    # for the non-legacy optimizers even at 0: a rate schedule does what decay did.
    sgd = getattr(opt.optimizer, "sgd", None)
    if opt.optimizer.type == "sgd" and sgd is not None:
        if sgd.decay:
            raise ValueError("trainer.optimizer.optimizer.sgd.decay is the legacy optimizers' "
                             "decay: use a learning_rate schedule instead")
        args = {k: v for k, v in sgd.as_dict().items()
                if k != "decay" and v is not None}
        return optimizer_factory.NEW_OPTIMIZERS_CLS["sgd"](learning_rate=rate, **args)
    return factory.build_optimizer(rate, use_legacy_optimizer=False)


def examples_stats(config) -> tuple[dict, str] | None:
    """The examples' ``stats.json`` (written by ``beam_jobs.build_examples``) and its path, or
    None when there is none."""
    path = os.path.join(config.data.examples, "stats.json")
    if not config.data.examples or not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f), path


def dataset_tasks(config) -> tuple[list[str], str] | None:
    """The labels the training data carries, and where that was read: the examples'
    ``stats.json`` (``dataset_tasks``, written by ``beam_jobs.build_examples``), else the
    dataset's ``dataset.json`` (``tasks``); None when neither says."""
    from ppm.data import canonical

    stats = examples_stats(config)
    if stats is not None and stats[0].get("dataset_tasks"):
        return list(stats[0]["dataset_tasks"]), stats[1]
    meta = os.path.join(config.data.dataset, canonical.DATASET_FILE)
    if config.data.dataset and tf.io.gfile.exists(meta):
        return list(canonical.read_meta(config.data.dataset).tasks), meta
    return None


def check_ranks(config) -> None:
    """Refuses ``top<k>`` tasks (GRACE's rank consistency) on a training window whose examples
    have no known rank: their labels would all be 0. Reads the examples' ``stats.json``
    (``windows.<window>.ranked``, written by ``beam_jobs.build_examples``); examples built
    before it was counted are not checked.

    Raises:
      ValueError: no example of the training window has a rank (the message says which tasks).
    """
    tasks = [t for t in config.model.tasks if features.top_k(t)]
    stats = examples_stats(config) if tasks else None
    if stats is None:
        return
    window = stats[0].get("windows", {}).get(config.data.train_window, {})
    if window.get("ranked") == 0:
        raise ValueError(f"model.tasks {tasks} learn the ranking model's top k, but no example "
                         f"of the {config.data.train_window} window has a rank ({stats[1]}: "
                         "windows.*.ranked is 0; the dataset's events have no `rank`)")


def restrict_to_dataset_tasks(config) -> list[str]:
    """Drops from ``model.tasks`` (and its per-task lists) the labels the data does not have.

    A dataset lists the labels that carry information (``dataset.json`` ``tasks``, copied into
    the examples' ``stats.json``: e.g. ``[click]`` for MIND, ``[click, order]`` for MovieLens and
    H&M); learning an all-zero label would only waste a tower. The change is logged and saved in
    the run's config.yaml. Returns the dropped tasks.

    Raises:
      ValueError: none of the model's tasks is in the data.
    """
    found = dataset_tasks(config)
    if found is None:
        return []
    have, source = found
    tasks = list(config.model.tasks)
    # top<k> and ranker_score are derived from the examples' features, not label columns
    keep = [t for t in tasks if t in have or features.is_derived(t)]
    dropped = [t for t in tasks if t not in keep]
    if not dropped:
        return []
    if not keep:
        raise ValueError(f"the model learns {tasks}, the data has only {have} ({source})")
    override = {"tasks": keep}
    for name in ("task_weights", "task_losses"):  # per-task lists follow their tasks
        values = list(getattr(config.model, name))
        if values:
            override[name] = [v for t, v in zip(tasks, values) if t in keep]
    config.override({"model": override})
    logger.warning("The data has no %s labels (%s lists %s): learning %s only", dropped,
                   source, have, keep)
    return dropped


def window_examples(config, window: str | None = None) -> int:
    """Examples in a window of the training data (the examples' ``stats.json``).

    Raises:
      FileNotFoundError: no ``stats.json``.
      ValueError: the window is not in it, or is empty.
    """
    window = window or config.data.train_window
    path = os.path.join(config.data.examples, "stats.json")
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} is missing (written by beam_jobs.build_examples); "
                                "trainer.train_passes needs the window's example count")
    with tf.io.gfile.GFile(path) as f:
        windows = json.load(f).get("windows", {})
    n = (windows.get(window) or {}).get("examples")
    if not n:
        raise ValueError(f"{path}: window {window!r} has no examples (windows: "
                         f"{ {k: v.get('examples') for k, v in windows.items()} })")
    return int(n)


def _passes(config, steps: int) -> float | None:
    """Passes over the training window that ``steps`` make (None: the count is unknown)."""
    try:
        return round(steps * config.data.global_batch_size / window_examples(config), 3)
    except (FileNotFoundError, ValueError):
        return None


def resolve_train_steps(config) -> None:
    """Sets ``trainer.train_steps`` from ``trainer.train_passes`` (when > 0), at least
    ``trainer.min_train_steps``."""
    t = config.trainer
    if t.train_passes > 0:
        n = window_examples(config)
        steps = max(1, math.ceil(t.train_passes * n / config.data.global_batch_size))
        floor = ""
        if steps < t.min_train_steps:
            steps, floor = t.min_train_steps, " (raised to trainer.min_train_steps)"
        config.override({"trainer": {"train_steps": steps}})
        logger.info("%g pass(es) over %s (%d examples) at batch %d: %d steps%s",
                    t.train_passes, config.data.train_window, n,
                    config.data.global_batch_size, steps, floor)


def train(config, model_dir: str, init_checkpoint: str | None = None, strategy=None,
          verbose: int = 1) -> dict:
    """Trains (or resumes) the run in ``model_dir``; returns the training summary.

    Raises:
      ValueError: bad config, or ``model_dir`` holds a run with another config.
      FileNotFoundError: missing examples, vocabularies, cache or checkpoints.
    """
    strategy = strategy or distribute.for_config(config)
    restrict_to_dataset_tasks(config)
    check_ranks(config)
    resolve_train_steps(config)
    config.validate()
    if distribute.is_chief(strategy):  # the other workers of a cluster write nothing here
        _check_same_run(config, model_dir)
        tf.io.gfile.makedirs(model_dir)
        hyperparams.save_params_dict_to_yaml(config, os.path.join(model_dir, CONFIG_FILE))
    keras.mixed_precision.set_global_policy(
        "mixed_float16" if config.trainer.mixed_precision else "float32")
    try:
        return _train(config, model_dir, init_checkpoint, strategy, verbose)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _train(config, model_dir, init_checkpoint, strategy, verbose) -> dict:
    chief = distribute.is_chief(strategy)
    manager_dir = os.path.join(model_dir, checkpoints.CHECKPOINT_DIR)
    # A non-chief worker reads the run's recorded inputs only once the chief has finished
    # writing them (they precede its first checkpoint).
    recorded = chief or checkpoints.scan(manager_dir).holds_checkpoints
    inputs = factory.load_inputs(config, run_dir=model_dir if recorded else None)
    if chief:
        factory.record_inputs(inputs, config, model_dir)
    files = train_files(config)
    t, d = config.trainer, config.data
    keras.utils.set_random_seed(d.seed)
    with strategy.scope():
        # Never start over in a folder that holds checkpoints: resume from the newest readable
        # one (damaged newer ones are set aside) or refuse (DamagedCheckpointError). Every
        # worker of a cluster resumes from the chief's checkpoints; the chief alone moves files.
        resume_from, damaged = (checkpoints.prepare_resume(manager_dir) if chief
                                else checkpoints.newest_readable(manager_dir))
        model, optimizer = build(config, inputs, None if resume_from else init_checkpoint)
        # A plug-in with an optimizer of its own (model.plugin) checkpoints it beside the
        # model's; runs without one keep the checkpoint layout they always had.
        own = plugins.PluginTraining.own_optimizer(model)
        extra = {"plugin_optimizer": own} if own is not None else {}
        ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, **extra)
        manager = tf.train.CheckpointManager(ckpt, distribute.write_dir(manager_dir, strategy),
                                             max_to_keep=t.max_to_keep,
                                             step_counter=optimizer.iterations)
        if resume_from:
            ckpt.restore(resume_from).assert_existing_objects_matched()
            logger.info("Resuming %s from %s (step %d)", model_dir, resume_from,
                        int(optimizer.iterations.numpy()))

    def dataset_fn(ctx):
        return pipeline.make_dataset(files, inputs.schema, d.global_batch_size, training=True,
                                     repeat=True, seed=d.seed, shuffle_buffer=d.shuffle_buffer,
                                     deterministic=t.deterministic_input, input_context=ctx)

    if distribute.is_parameter_server(strategy):  # each worker builds its own shard's input
        dataset = keras.utils.experimental.DatasetCreator(dataset_fn)
    else:
        dataset = strategy.distribute_datasets_from_function(dataset_fn)
    start = step = int(optimizer.iterations.numpy())
    callback = _CheckpointAndSpeed(
        manager, d.global_batch_size,
        None if chief else lambda: distribute.remove_write_dir(manager_dir, strategy))
    started = time.perf_counter()
    history = {}
    if step < t.train_steps:
        logger.info("Training %s (plug-in %s) on %s for %d steps of %d examples, %d replicas",
                    config.model.type, config.model.plugin.describe(), d.train_window,
                    t.train_steps, d.global_batch_size, strategy.num_replicas_in_sync)
        callbacks = [callback, keras.callbacks.TensorBoard(os.path.join(model_dir, "logs"),
                                                           update_freq="epoch")]
        progress = None
        if verbose == 1:  # our bar over the whole run instead of Keras' one per loop
            progress = _Progress(t.train_steps, step, f"training {config.model.type}")
            callbacks.append(progress)
        # Whole loops of checkpoint_interval steps, then a shorter last loop ending at
        # train_steps; a checkpoint after each loop, so a resumed run starts at a loop boundary.
        full, rest = divmod(t.train_steps, t.checkpoint_interval)
        loops = [(t.checkpoint_interval, full, 0)] + ([(rest, 1, full)] if rest else [])
        for steps_per_loop, count, first in loops:
            done = (step - first * t.checkpoint_interval) // steps_per_loop
            if done >= count:
                continue
            fit = model.fit(dataset, epochs=first + count, initial_epoch=first + max(done, 0),
                            steps_per_epoch=steps_per_loop, verbose=0 if progress else verbose,
                            callbacks=callbacks).history
            for k, v in fit.items():
                history.setdefault(k, []).extend(v)
            step = int(optimizer.iterations.numpy())
        if progress is not None:
            progress.bar.close()
    summary = {
        "experiment": {"model": config.model.type, "plugin": config.model.plugin.describe()},
        "steps": int(optimizer.iterations.numpy()),
        "resumed_from_step": start if resume_from else None,
        "passes": _passes(config, int(optimizer.iterations.numpy())),
        "damaged_checkpoints_skipped": [{"checkpoint": p, "reason": r} for p, r in damaged],
        "cache_coverage": inputs.coverage,
        "replicas": strategy.num_replicas_in_sync,
        "dtype_policy": model.dtype_policy.name,
        "train_examples_per_second": callback.speeds,
        "seconds": time.perf_counter() - started,
        "final": {k: float(v[-1]) for k, v in history.items()} if history else None,
        "loss_per_loop": [float(v) for v in history.get("loss", [])],
        "sharded_variables": distribute.sharded_variables(model),
        "checkpoint": manager.latest_checkpoint,
        "chief": chief,
    }
    if chief:
        with tf.io.gfile.GFile(os.path.join(model_dir, SUMMARY_FILE), "w") as f:
            json.dump(summary, f, indent=2)
    else:
        summary["checkpoint"] = checkpoints.newest_readable(manager_dir)[0]
    return summary


def needs_plugin_checkpoint(config) -> bool:
    """The plug-in is loaded (frozen or fine-tuned) but ``model.plugin.checkpoint`` is unset."""
    p = config.model.plugin
    return bool(p.kind) and p.init != "random" and not p.checkpoint


def use_demo_folders(config, run_root: str, preset: str) -> None:
    """Points a config with no data paths at the demo's folders under ``run_root``, and a
    plug-in without a checkpoint at the pre-trained run of its kind there
    (``train/<preset>_<kind>_pretrain``: ``make demo`` builds the data and the PPM run).

    Raises:
      FileNotFoundError: the folders (or the pre-trained run) are not there: the message says
        what to run.
    """
    if not (config.data.examples or config.data.embeddings):
        paths = configs.data_paths(run_root)
        missing = [p for p in paths.values() if not tf.io.gfile.exists(p)]
        if missing:
            raise FileNotFoundError(
                f"no data paths were given (data.examples, data.embeddings) and the demo's "
                f"folders are missing ({', '.join(missing)}): build them with `make demo` "
                f"(python -m ppm.demo --run_dir {run_root}), or pass --params_override "
                "data.examples=DIR,data.embeddings=DIR,data.dataset=DIR")
        config.override({"data": paths})
    if needs_plugin_checkpoint(config):
        kind = config.model.plugin.kind
        run = os.path.join(run_root, "train", f"{preset}_{kind}_pretrain")
        if not tf.io.gfile.exists(os.path.join(run, SUMMARY_FILE)):
            raise FileNotFoundError(
                f"model.plugin.init={config.model.plugin.init!r} loads a pre-trained "
                f"{kind} but model.plugin.checkpoint is not set and {run} "
                f"holds no finished run: pre-train one (python -m ppm.train --experiment "
                f"{kind}_pretrain --preset {preset}) or set model.plugin.checkpoint=RUN")
        logger.info("Plug-in checkpoint: %s", run)
        config.override({"model": {"plugin": {"checkpoint": run}}})


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ppm.train", description=__doc__.split("\n\n")[0] + " Trains (or "
        "resumes) one run, then evaluates it. Without data paths it reads the demo's folders "
        "under --run_root (built by `make demo`), and a plug-in without a checkpoint is the "
        "pre-trained run of its kind there (train/<preset>_ppm_pretrain, "
        "train/<preset>_make_pretrain).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Experiments: {', '.join(configs.EXPERIMENTS)}. Presets: "
        f"{', '.join(configs.PRESETS)}. Several machines: set TF_CONFIG on each and pass "
        "--strategy multi_worker_mirrored (the same command on every worker; the chief, worker "
        "0, writes --model_dir), or --strategy parameter_server on the chief while the workers "
        "and parameter servers run python -m ppm.distribute (docs/training.md, Distribution).")
    parser.add_argument("--experiment", default="urm", help="Registered experiment "
                        f"({', '.join(configs.EXPERIMENTS)}), or '<preset>_<experiment>'.")
    parser.add_argument("--preset", default="demo", choices=configs.PRESETS,
                        help="paper: PPM §4.2.3 (batch 20000, 64-d, 2 layers, 4 heads); demo: "
                        "a 2-core CPU in minutes; tiny: smoke tests.")
    parser.add_argument("--config_file", action="append", default=[],
                        help="YAML file overriding config fields (repeatable, applied in order).")
    parser.add_argument("--params_override", default="",
                        help="Comma-separated overrides, e.g. "
                        "'data.global_batch_size=4096,model.plugin.init=frozen'.")
    parser.add_argument("--model_dir", default=None, help="Run folder (default: "
                        "<run_root>/train/<preset>_<experiment>). An existing run resumes.")
    parser.add_argument("--strategy", default=None, choices=configs.definitions.STRATEGIES,
                        help="Overrides runtime.strategy (default mirrored: all local "
                        "devices).")
    parser.add_argument("--init_checkpoint", default=None,
                        help="Warm-start from this earlier run folder or checkpoint (daily "
                        "incremental training); ignored when --model_dir already has "
                        "checkpoints (resume).")
    parser.add_argument("--run_root", default="runs/demo",
                        help="The demo's folder, read when the config has no data paths.")
    parser.add_argument("--no_eval", action="store_true", help="Skip the final evaluation.")
    parser.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2],
                        help="Training progress: 0 silent, 1 a progress bar (on stderr, in a "
                        "terminal only), 2 Keras' line per checkpoint loop.")
    return parser.parse_args(argv)


def experiment_name(experiment: str) -> str:
    """``paper_urm`` -> ``urm``; ``urm`` -> ``urm``."""
    prefix, _, rest = experiment.partition("_")
    return rest if prefix in configs.PRESETS else experiment


def train_and_evaluate(config, model_dir: str, init_checkpoint: str | None = None,
                       evaluate_after: bool = True, verbose: int = 1) -> dict:
    """Trains the run (console stage ``train``), then evaluates it (stage ``evaluate``) and
    prints the table; returns the training summary."""
    console.stage("train", "Training %s (plug-in %s) on the %s window in %s", config.model.type,
                  config.model.plugin.describe(), config.data.train_window, model_dir)
    summary = train(config, model_dir, init_checkpoint, verbose=verbose)
    speeds = summary["train_examples_per_second"]
    if speeds:
        logger.info("Trained %d steps; last loop %.0f examples/s", summary["steps"], speeds[-1])
    if not summary["chief"]:
        logger.info("A non-chief worker: the chief evaluates %s", model_dir)
    elif evaluate_after:
        from ppm import evaluate  # noqa: PLC0415

        console.stage("evaluate", "Evaluating %s on the %s window", model_dir,
                      config.data.eval_window)
        print(evaluate.format_table(evaluate.evaluate_run(model_dir,
                                                          progress=console.interactive())))
    return summary


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    override = args.params_override
    if args.strategy:
        override = ",".join(filter(None, [override, f"runtime.strategy={args.strategy}"]))
    config = configs.resolve(args.experiment, args.preset, args.config_file, override,
                             validate=False)
    # Multi-worker strategies must exist before TensorFlow runs anything in the process.
    distribute.for_config(config)
    use_demo_folders(config, args.run_root, args.preset)
    config.validate()
    model_dir = args.model_dir or os.path.join(args.run_root, "train",
                                               f"{args.preset}_{experiment_name(args.experiment)}")
    with console.plan(["train"] + ([] if args.no_eval else ["evaluate"])):
        try:
            train_and_evaluate(config, model_dir, args.init_checkpoint,
                               evaluate_after=not args.no_eval, verbose=args.verbose)
        except (tf.errors.UnavailableError, tf.errors.AbortedError) as e:
            if config.runtime.strategy != "multi_worker_mirrored":
                raise
            logger.error(
                "Another worker of the cluster failed or cannot be reached (%s). Restart "
                "every worker with the same command: the run resumes from the chief's last "
                "checkpoint in %s", e.message.strip().splitlines()[0],
                os.path.join(model_dir, checkpoints.CHECKPOINT_DIR))
            return 3
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, FileNotFoundError, checkpoints.DamagedCheckpointError) as e:
        # Bad input or a damaged run: the reason, not a traceback (--verbose does not change it).
        logger.error("%s", e)
        sys.exit(2)
