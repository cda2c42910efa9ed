"""Export a trained ranking model as a versioned SavedModel for TF Serving (`ppm.export`).

    python -m ppm.export --run runs/demo/train/demo_urm --name urm [--version N] \\
        [--base_dir saved_models] [--embeddings NEW_CACHE_VERSION] [--no_fold_items]

Layout (what TF Serving polls): ``<base_dir>/<name>/<version>/`` with ``saved_model.pb``,
``variables/``, ``assets.extra/tf_serving_warmup_requests`` and ``assets.extra/ppm_export.json``
(the run and checkpoint the version was exported from). The version folder appears
atomically: the model is written to a hidden temporary folder beside it and renamed, so a
server polling ``<base_dir>/<name>`` never sees half a model. Without ``--version`` the next
integer after the highest existing version is used.

The ``serving_default`` signature takes the raw request features named and typed by
:mod:`ppm.features` (target ids, position, history ids, positions, recency buckets and length,
user profile), histories as ``[batch, any length]`` (padded or cut to the model's
``max_history`` inside), and returns ``p_<task>`` float32 ``[batch]`` for every task. The
embedding cache table and the id-to-row hash tables are inside the SavedModel: a request carries
only ids, and unknown ids use the reserved rows.

The ``rank_listwise`` signature takes one row per request: the request's inputs once (user
profile, history ``[B, L]``, query) and the candidates' inputs (target ids and ``position``)
as ``[B, N]`` with ``candidate_mask`` ``[B, N]`` (1 for a candidate, 0 for padding: TF
Serving's batching pads N across requests), and returns ``p_<task>`` ``[B, N]`` (0 at padding),
the same scores as ``serving_default`` for the same candidates. A request sends its user once
instead of N times; with a history-only Behavior-Transformer (``target_mode: history``) the
model computes the user side once per request as well.

The PPM module's item side is precomputed into the SavedModel (the paper's "intermediate
results cached"): each row of the cached ``[E_title | E_image]`` table gets its learnt
presence-flag embedding added at export, so a served item token is one lookup
(:func:`ppm.models.modules.fold_item_tokens`; exact, bitwise in float32; only where the
module is the cache's one reader). ``--no_fold_items`` serves the live computation.

``--embeddings`` exports the same checkpoint with a newer version of its embedding cache
(``beam_jobs.embed_items --parent``, same encoders): items added to the catalogue since training
are served with their real vectors, without retraining (Taobao multimodal paper,
arXiv:2407.19467, §5), and the server hot-loads the new version.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import sys

import numpy as np
import tensorflow as tf

from ppm import checkpoints, features
from ppm.models import modules
from ppm.serving import client

logger = logging.getLogger(__name__)
WARMUP_FILE = "tf_serving_warmup_requests"
INFO_FILE = "ppm_export.json"  # in assets.extra/: which run and checkpoint a version is
SIGNATURE = "serving_default"
# One row per request: the user once, N candidates with candidate_mask [B, N] (1 for a real
# candidate, 0 for padding); module docstring. The names are the client's.
LISTWISE_SIGNATURE, CANDIDATE_MASK = client.LISTWISE_SIGNATURE, client.CANDIDATE_MASK
_VERSION = re.compile(r"^\d+$")


def input_signature(schema: features.FeatureSchema) -> dict:
    """``{name: tf.TensorSpec}`` of the serving inputs (model inputs of the schema)."""
    specs = {}
    for name in features.model_input_names(schema):
        f = schema[name]
        specs[name] = tf.TensorSpec([None, None] if f.sequence else [None], f.tf_dtype(),
                                    name=name)
    return specs


def candidate_inputs(schema: features.FeatureSchema) -> tuple[str, ...]:
    """The inputs that differ per candidate of a request (the target item's ids and its
    position); every other input belongs to the request (user, history, profile, query)."""
    return tuple(f.name for f in schema.by_role(features.TARGET)) + ("position",)


def listwise_signature(schema: features.FeatureSchema) -> dict:
    """``{name: tf.TensorSpec}`` of the listwise signature: one row per request, the
    candidates' inputs ``[B, N]`` with :data:`CANDIDATE_MASK`, the request's ``[B]`` (history
    ``[B, L]``)."""
    specs, per_candidate = {}, candidate_inputs(schema)
    for name, spec in input_signature(schema).items():
        shape = [None, None] if name in per_candidate else spec.shape
        specs[name] = tf.TensorSpec(shape, spec.dtype, name=name)
    specs[CANDIDATE_MASK] = tf.TensorSpec([None, None], tf.int64, name=CANDIDATE_MASK)
    return specs


def serving_schema(model, schema: features.FeatureSchema) -> features.FeatureSchema:
    """The schema of what ``model`` reads: the serving signature of a model asks for no
    feature it ignores. ``hist_session`` (DSIN's sessions) is an input only of models whose
    ``extra_inputs`` name it, so URM and the other models export the signature they always
    had, whatever examples they were trained on."""
    if schema.sessions and features.HIST_SESSION not in getattr(model, "extra_inputs", ()):
        return dataclasses.replace(schema, sessions=False)
    return schema


class ServingModule(tf.Module):
    """Wraps a ranking model with the ``serving_default`` (pointwise) and ``rank_listwise``
    signatures."""

    def __init__(self, model, schema: features.FeatureSchema):
        super().__init__()
        self.model = model
        self._schema = schema
        self.serve = tf.function(self._serve, input_signature=[input_signature(schema)])
        self.rank_listwise = tf.function(self._rank,
                                         input_signature=[listwise_signature(schema)])

    def _rank(self, inputs):
        """The listwise signature: the real candidates of every request become rows of the
        pointwise computation (the request's inputs gathered for each), and the outputs go
        back to ``[B, N]``, 0 at padded candidates. Exactly the pointwise scores."""
        inputs = dict(inputs)
        mask = inputs.pop(CANDIDATE_MASK)
        per_candidate = [n for n in candidate_inputs(self._schema) if n in inputs]
        shape = tf.shape(mask)
        checks = [tf.debugging.assert_greater(
            shape[1], 0, message="a listwise request needs at least one candidate (N >= 1)")]
        for n in per_candidate:
            checks.append(tf.debugging.assert_equal(
                tf.shape(inputs[n]), shape,
                message=f"candidate input {n} and candidate_mask have different shapes"))
        for n in sorted(set(inputs) - set(per_candidate)):
            checks.append(tf.debugging.assert_equal(
                tf.shape(inputs[n])[0], shape[0],
                message=f"request input {n} has another batch size than candidate_mask"))
        checks.append(tf.debugging.assert_equal(
            tf.reduce_all((mask == 0) | (mask == 1)), True,
            message="candidate_mask must hold 0 (padding) or 1 (a candidate)"))
        with tf.control_dependencies(checks):
            rows = tf.where(tf.reshape(mask, [-1]) > 0)[:, 0]  # real candidates in B * N
        request = rows // tf.cast(shape[1], rows.dtype)
        flat = {n: tf.gather(tf.reshape(inputs[n], [-1]), rows) for n in per_candidate}
        flat.update({n: tf.gather(v, request) for n, v in inputs.items()
                     if n not in per_candidate})
        size = tf.cast(shape[0] * shape[1], rows.dtype)
        return {k: tf.reshape(tf.scatter_nd(rows[:, None], v, [size]), shape)
                for k, v in self._serve(flat).items()}

    def _serve(self, inputs):
        feats = self.model_features(inputs)
        return {f"p_{t}": v for t, v in self.model.probabilities(feats, training=False).items()}

    def model_features(self, inputs):
        """The model's features of pointwise request inputs: checked, histories padded or cut
        to ``max_history``."""
        with tf.control_dependencies(self._check_shapes(inputs)):  # checked before use
            inputs = {k: tf.identity(v) for k, v in inputs.items()}
        feats = {}
        width = self._schema.max_history
        for name, value in inputs.items():
            f = self._schema[name]
            if f.sequence:  # pad (with the schema's padding value) or cut to max_history
                pad = tf.maximum(width - tf.shape(value)[1], 0)
                value = tf.pad(value, [[0, 0], [0, pad]], constant_values=f.default)
                value = value[:, :width]
            feats[name] = value
        return feats

    def _check_shapes(self, inputs):
        """INVALID_ARGUMENT (in TF Serving too) for inconsistent batch sizes or history widths,
        and for ``hist_len`` outside ``[0, history width]``: these would otherwise be scored
        silently wrong (a history padded with empty items counted as real ones)."""
        names = sorted(inputs)
        checks = []
        batch = tf.shape(inputs["item_id"])[0]
        seqs = [n for n in names if self._schema[n].sequence]
        width = tf.shape(inputs[seqs[0]])[1]
        for n in names:
            checks.append(tf.debugging.assert_equal(
                tf.shape(inputs[n])[0], batch,
                message=f"input {n} has another batch size (0th dimension) than item_id"))
        for n in seqs[1:]:
            checks.append(tf.debugging.assert_equal(
                tf.shape(inputs[n])[1], width,
                message=f"history input {n} has another length (1st dimension) than {seqs[0]}"))
        hist_len = inputs["hist_len"]
        checks.append(tf.debugging.assert_non_negative(hist_len, message="hist_len must be >= 0"))
        checks.append(tf.debugging.assert_less_equal(
            hist_len, tf.cast(width, hist_len.dtype),
            message="hist_len is larger than the history sent (its 1st dimension)"))
        return checks


def next_version(model_dir: str) -> int:
    """1 + the highest integer version folder in ``model_dir`` (1 when there is none)."""
    if not tf.io.gfile.isdir(model_dir):
        return 1
    versions = [int(n.rstrip("/")) for n in tf.io.gfile.listdir(model_dir)
                if _VERSION.match(n.rstrip("/"))]
    return max(versions, default=0) + 1


def read_info(version_dir: str) -> dict:
    """``assets.extra/ppm_export.json`` of an exported version ({} for other SavedModels)."""
    path = os.path.join(version_dir, "assets.extra", INFO_FILE)
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def checkpoint_digest(run_dir: str) -> str:
    """SHA-256 of the latest checkpoint's ``.index`` (it holds a CRC32C of every tensor): the
    same digest means the same weights, whatever the checkpoint's path."""
    with tf.io.gfile.GFile(checkpoints.latest(run_dir) + ".index", "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def latest_export(run_dir: str, model_dir: str) -> str | None:
    """The highest version in ``model_dir`` exported from the weights of ``run_dir``'s latest
    checkpoint, or None (the run has not been exported since it last changed)."""
    want = checkpoint_digest(run_dir)
    for version in range(next_version(model_dir) - 1, 0, -1):
        folder = os.path.join(model_dir, str(version))
        if read_info(folder).get("checkpoint_digest") == want:
            return folder
    return None


def _prediction_log(request):
    from tensorflow_serving.apis import prediction_log_pb2

    return prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request))


def warmup_requests(name: str, features_batch: dict, schema, count: int = 4) -> list:
    """TF Serving ``PredictionLog`` records (Predict requests) built from one example batch."""
    names = features.model_input_names(schema)
    return [_prediction_log(client.predict_request(
        name, {k: np.asarray(features_batch[k])[i:i + 1] for k in names}, SIGNATURE))
        for i in range(count)]


def listwise_inputs(pointwise: dict, schema: features.FeatureSchema) -> dict:
    """The ``rank_listwise`` inputs of one request from its pointwise features (one row per
    candidate; :func:`ppm.serving.client.listwise_inputs` with this schema's signature)."""
    ranks = {k: len(spec.shape) for k, spec in listwise_signature(schema).items()}
    return client.listwise_inputs(pointwise, ranks)


def listwise_warmup_request(name: str, features_batch: dict, schema):
    """A ``rank_listwise`` warm-up record: the batch's items as the candidates of its first
    example's request."""
    return _prediction_log(client.predict_request(
        name, listwise_inputs(features_batch, schema), LISTWISE_SIGNATURE))


def export(run_dir: str, name: str, base_dir: str = "saved_models",
           version: int | None = None, warmup_split: str = "test",
           embeddings: str | None = None, fold_items: bool = True) -> str:
    """Exports the run's latest checkpoint; returns the version folder.

    Args:
      embeddings: a newer version of the run's embedding cache to serve (module docstring).
      fold_items: fold the PPM module's item side into the cached table
        (:func:`ppm.models.modules.fold_item_tokens`; exact); False serves the live computation.

    Raises:
      FileExistsError: the version folder exists.
      FileNotFoundError: not a run folder, or no checkpoint.
    """
    from ppm import evaluate  # noqa: PLC0415 - loads the model (Keras 2)
    from ppm.data import pipeline

    model, inputs, config = evaluate.load_model(run_dir, embeddings=embeddings)
    folded = modules.fold_item_tokens(model) if fold_items else []
    if folded:
        logger.info("Item tokens precomputed into the embedding cache's table: %s", folded)
    model_dir = os.path.join(base_dir, name)
    version = version or next_version(model_dir)
    final = os.path.join(model_dir, str(version))
    if tf.io.gfile.exists(final):
        raise FileExistsError(f"{final} exists: choose another --version")
    tmp = os.path.join(model_dir, f".tmp-{version}-{os.getpid()}")
    schema = serving_schema(model, inputs.schema)
    module = ServingModule(model, schema)
    try:
        tf.saved_model.save(module, tmp, signatures={SIGNATURE: module.serve,
                                                     LISTWISE_SIGNATURE: module.rank_listwise})
        files = pipeline.list_files(os.path.join(config.data.examples, warmup_split))
        batch, _ = next(iter(pipeline.make_dataset(files, inputs.schema, 4, training=False)))
        extra = os.path.join(tmp, "assets.extra")
        tf.io.gfile.makedirs(extra)
        with tf.io.TFRecordWriter(os.path.join(extra, WARMUP_FILE)) as w:
            values = {k: v.numpy() for k, v in batch.items()}
            for log in warmup_requests(name, values, schema, count=len(batch["item_id"])):
                w.write(log.SerializeToString())
            w.write(listwise_warmup_request(name, values, schema).SerializeToString())
        info = {"run": os.path.abspath(run_dir), "checkpoint": checkpoints.latest(run_dir),
                "checkpoint_digest": checkpoint_digest(run_dir),
                "model": config.model.type, "name": name, "version": version,
                "cache_coverage": inputs.coverage,
                "embeddings": config.data.embeddings or None,
                "folded_item_tokens": folded,
                "cache_version": (inputs.cache.manifest.get("version", 1)
                                  if inputs.cache is not None else None)}
        with tf.io.gfile.GFile(os.path.join(extra, INFO_FILE), "w") as f:
            json.dump(info, f, indent=2, sort_keys=True)
        tf.io.gfile.rename(tmp, final)
    finally:
        if tf.io.gfile.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("Exported %s (%s) to %s", run_dir, config.model.type, final)
    return final


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ppm.export", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="A run folder of python -m ppm.train.")
    parser.add_argument("--name", required=True, help="Model name (folder under --base_dir, "
                        "and the name clients ask TF Serving for).")
    parser.add_argument("--version", type=int, default=None,
                        help="Integer version (default: the next one).")
    parser.add_argument("--base_dir", default="saved_models",
                        help="Folder of exported models (TF Serving's base paths).")
    parser.add_argument("--embeddings", default=None,
                        help="A newer version of the run's embedding cache (beam_jobs."
                        "embed_items --parent, same encoders): export the same checkpoint "
                        "with its vectors, so new items are served with theirs.")
    parser.add_argument("--no_fold_items", action="store_true",
                        help="Serve the PPM module's item tokens as computed in training "
                        "(cached vector + flag embedding, per request) instead of folding the "
                        "flag embedding into the cached table at export (exact; the default).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.version is not None and args.version < 1:
        parser.error("--version must be a positive integer")
    print(export(args.run, args.name, args.base_dir, args.version,
                 embeddings=args.embeddings, fold_items=not args.no_fold_items))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (
        ValueError, FileNotFoundError, FileExistsError, checkpoints.DamagedCheckpointError
    ) as e:
        logger.error("%s", e)  # bad input: the reason, not a traceback
        sys.exit(2)
