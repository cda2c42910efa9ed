"""Versioned models as TF Serving serves them: config, version policy, one loaded version.

:func:`read_model_config` reads a ``ModelServerConfig`` (TF Serving's ``--model_config_file``,
text format); :func:`wanted_versions` applies a model's ``model_version_policy`` to the integer
folders under its ``base_path`` (relative paths are relative to the working directory, as in
TF Serving); a :class:`Servable` is one loaded version, whose
``assets.extra/tf_serving_warmup_requests`` :func:`warm_up` replays before it is served.
:class:`ppm.serving.manager.ModelManager` polls the base paths and swaps versions: a new
version is loaded and warmed *before* it replaces the old one, and requests already running
keep the :class:`Servable` object they hold, so a swap never fails a request.

Status codes follow TF Serving's ``ServerCore``/``predict_util``: unknown model or version
``NOT_FOUND``, unknown version label ``INVALID_ARGUMENT``, unknown signature
``FAILED_PRECONDITION``, bad inputs ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

import logging
import os
import re

import grpc
import tensorflow as tf

from ppm.serving import tensors

try:  # registers the WordPiece ops a SavedModel with a text encoder inside needs
    import tensorflow_text  # noqa: F401
except ImportError:  # pragma: no cover - a dependency of this project
    pass

logger = logging.getLogger(__name__)
DEFAULT_SIGNATURE = "serving_default"
WARMUP_PATH = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit
_VERSION = re.compile(r"^\d+$")
# Rows (first dimension) one request may declare (--max_rows_per_request): 4x the 2,048-row
# batches of serving_config/batching.config, 40x a 200-candidate ranking request.
DEFAULT_MAX_ROWS = 8192
# What a request's inputs may expand to once decoded: what gRPC would let it send.
MAX_DECODED_BYTES = 256 * 1024 * 1024
_INIT_OP = "__saved_model_init_op"


class ServingError(Exception):
    """An error with the gRPC status code TF Serving gives for it."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def read_model_config(path: str):
    """Parses a ``ModelServerConfig`` text file; returns its ``model_config_list.config`` list.

    Raises:
      FileNotFoundError: no such file.
      ValueError: not a ModelServerConfig, no model, a duplicate name, or a platform other
        than ``tensorflow``.
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"model config file {path} does not exist")
    config = model_server_config_pb2.ModelServerConfig()
    with tf.io.gfile.GFile(path) as f:
        try:
            text_format.Parse(f.read(), config)
        except text_format.ParseError as e:
            raise ValueError(f"{path} is not a ModelServerConfig text proto: {e}") from e
    models = list(config.model_config_list.config)
    if not models:
        raise ValueError(f"{path} has no model_config_list.config entry")
    names = [m.name for m in models]
    for m in models:
        if not m.name or not m.base_path:
            raise ValueError(f"{path}: every model needs a name and a base_path")
        if names.count(m.name) > 1:
            raise ValueError(f"{path}: model {m.name!r} is configured twice")
        if m.model_platform not in ("", "tensorflow"):
            raise ValueError(f"{path}: model {m.name!r} has platform {m.model_platform!r}; "
                             "only 'tensorflow' SavedModels are served")
    return models


def model_config(name: str, base_path: str, versions: list[int] | None = None):
    """A ``ModelConfig``: the latest version of ``base_path``, or the given ``versions``."""
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelConfig(name=name, base_path=base_path,
                                                 model_platform="tensorflow")
    if versions:
        config.model_version_policy.specific.versions.extend(versions)
    else:
        config.model_version_policy.latest.num_versions = 1
    return config


def available_versions(base_path: str) -> list[int]:
    """Integer version folders under ``base_path`` (hidden temporaries ignored), ascending."""
    if not tf.io.gfile.isdir(base_path):
        return []
    return sorted(int(n.rstrip("/")) for n in tf.io.gfile.listdir(base_path)
                  if _VERSION.match(n.rstrip("/"))
                  and tf.io.gfile.exists(os.path.join(base_path, n.rstrip("/"), "saved_model.pb")))


def wanted_versions(policy, versions: list[int]) -> list[int]:
    """The versions a ``FileSystemStoragePathSourceConfig.ServableVersionPolicy`` serves."""
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return list(versions)
    if which == "specific":
        return sorted(set(policy.specific.versions) & set(versions))
    n = policy.latest.num_versions if which == "latest" and policy.latest.num_versions else 1
    return versions[-n:]


def _signature_defs(path: str) -> dict:
    from tensorflow.python.saved_model import loader_impl  # noqa: PLC0415 - the proto reader

    saved = loader_impl.parse_saved_model(path)
    meta = next((m for m in saved.meta_graphs if "serve" in m.meta_info_def.tags),
                saved.meta_graphs[0])
    return {k: v for k, v in meta.signature_def.items() if k != _INIT_OP}


def _dtype_name(enum: int) -> str:
    return tf.dtypes.as_dtype(enum).name


class Servable:
    """One loaded version of a model: its signatures and their SignatureDefs."""

    def __init__(self, name: str, version: int, path: str):
        self.name, self.version, self.path = name, version, path
        self.loaded = tf.saved_model.load(path)
        self.signatures = dict(self.loaded.signatures)
        self.signature_defs = _signature_defs(path)

    def signature_def(self, signature_name: str):
        key = signature_name or DEFAULT_SIGNATURE
        if key not in self.signature_defs or key not in self.signatures:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f'Serving signature key "{key}" not found.')
        return key, self.signature_defs[key]

    def predict(self, signature_name: str, inputs: dict, output_filter=(),
                max_rows: int = DEFAULT_MAX_ROWS, time_remaining=None) -> dict:
        """Runs a signature on TensorProtos; returns ``{alias: np.ndarray}``.

        Every input's declared shape is checked against the values it carries, the signature's
        shape and ``max_rows`` before any array is built (:func:`ppm.serving.tensors.
        declared_size`), so a small request cannot make the server allocate gigabytes.

        Args:
          signature_name: '' for ``serving_default``.
          inputs: ``{alias: TensorProto}``.
          output_filter: aliases to return ('' for all).
          max_rows: the most rows (first dimension) an input may declare.
          time_remaining: a callable giving the request's seconds left (gRPC's
            ``context.time_remaining``), or None: work stops once it is <= 0.

        Raises:
          ServingError: the codes and messages of TF Serving's ``predict_util``;
            INVALID_ARGUMENT for a request too large or whose values do not match its shapes;
            DEADLINE_EXCEEDED once ``time_remaining`` says the deadline passed.
        """
        key, sig = self.signature_def(signature_name)
        expected, sent = set(sig.inputs), set(inputs)
        if expected != sent:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, (
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                f"Missing but required: {{{','.join(sorted(expected - sent))}}}."))
        outputs = list(output_filter) or sorted(sig.outputs)
        for alias in outputs:
            if alias not in sig.outputs:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, (
                    f"output tensor alias not found in signature: {alias} Outputs expected to "
                    f"be in the set {{{','.join(sorted(sig.outputs))}}}."))
        if len(set(outputs)) != len(outputs):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               "duplicate output tensor alias in output_filter")
        total = 0
        for i, alias in enumerate(sorted(inputs)):  # every check before any allocation
            info, proto = sig.inputs[alias], inputs[alias]
            if proto.dtype != info.dtype:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, (
                    f"Expects arg[{i}] ({alias}) to be {_dtype_name(info.dtype)} but "
                    f"{_dtype_name(proto.dtype) if proto.dtype else 'invalid'} is provided"))
            try:
                total += tensors.declared_size(alias, proto, max_rows)
            except ValueError as e:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from e
            got = [d.size for d in proto.tensor_shape.dim]
            want = [d.size for d in info.tensor_shape.dim]
            if not info.tensor_shape.unknown_rank and (
                    len(got) != len(want) or any(w >= 0 and w != g for w, g in zip(want, got))):
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, (
                    f"input {alias} has shape {got}; the signature expects "
                    f"{[w if w >= 0 else None for w in want]} (None: any size)"))
        if total > MAX_DECODED_BYTES:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, (
                f"the request's inputs would take {total / 2**20:.0f} MiB once decoded, more "
                f"than the {MAX_DECODED_BYTES // 2**20} MiB a request may expand to (the gRPC "
                "message limit): send fewer rows or one value per element"))
        _check_deadline(time_remaining, "before decoding the inputs")
        args = {}
        for alias in sorted(inputs):
            try:
                value = tf.make_ndarray(inputs[alias])
            except Exception as e:  # noqa: BLE001 - any malformed TensorProto
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"tensor parsing error: {alias} ({type(e).__name__}: "
                                   f"{e})") from e
            args[alias] = tf.constant(value, dtype=tf.dtypes.as_dtype(sig.inputs[alias].dtype))
        _check_deadline(time_remaining, "before running the model")
        try:
            result = self.signatures[key](**args)
        except tf.errors.OpError as e:
            raise ServingError(grpc.StatusCode(_grpc_code(e.error_code)),
                               op_error_message(e.message)) from e
        _check_deadline(time_remaining, "after running the model")
        return {alias: result[alias].numpy() for alias in outputs}


def _check_deadline(time_remaining, when: str) -> None:
    left = time_remaining() if time_remaining is not None else None
    if left is not None and left <= 0:
        raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                           f"Deadline exceeded {when} (or the client cancelled): the "
                           "request's work was stopped")


def op_error_message(message: str) -> str:
    """The useful part of a TF runtime error (the failed assertion, say), without the graph
    execution boilerplate and node names."""
    skip = ("Graph execution error", "Detected at node", "<stack traces", "[[")
    lines = [ln.split("\t [[")[0].strip() for ln in message.splitlines()]
    kept = [ln for ln in lines if ln and not ln.startswith(skip) and not ln.startswith("File ")]
    return " ".join(kept) or message


def _grpc_code(tf_code: int):
    # TF's error codes are gRPC's (tensorflow/core/protobuf/error_codes.proto).
    return next((c.value for c in grpc.StatusCode if c.value[0] == tf_code),
                grpc.StatusCode.UNKNOWN.value)


def warm_up(servable: Servable) -> int:
    """Replays ``assets.extra/tf_serving_warmup_requests`` (Predict logs); returns the count.

    Raises:
      ValueError: a record is not a Predict log or fails, as TF Serving fails the load then.
    """
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(servable.path, WARMUP_PATH)
    if not tf.io.gfile.exists(path):
        return 0
    count = 0
    for raw in tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(raw)
        if log.WhichOneof("log_type") != "predict_log":
            raise ValueError(f"{path}: only predict_log warm-up records are supported")
        request = log.predict_log.request
        try:
            servable.predict(request.model_spec.signature_name, dict(request.inputs),
                             request.output_filter)
        except ServingError as e:
            raise ValueError(f"{path}: warm-up request {count} failed: {e.message}") from e
        count += 1
    return count
