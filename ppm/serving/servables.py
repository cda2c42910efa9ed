"""Versioned models as TF Serving manages them: config, version policy, loading, hot swap.

:class:`ModelManager` reads a ``ModelServerConfig`` (TF Serving's ``--model_config_file``, text
format), loads the versions each model's ``model_version_policy`` asks for from the integer
folders under its ``base_path`` (relative paths are relative to the working directory, as in
TF Serving), runs the version's ``assets.extra/tf_serving_warmup_requests`` before serving it,
and polls the base paths: a new version is loaded and warmed *before* it replaces the old one,
and requests already running keep the :class:`Servable` object they hold, so a swap never fails
a request. The old version is then dropped (state ``END``) and freed when its last request
returns.

Status codes follow TF Serving's ``ServerCore``/``predict_util``: unknown model or version
``NOT_FOUND``, unknown version label ``INVALID_ARGUMENT``, unknown signature
``FAILED_PRECONDITION``, bad inputs ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading

import grpc
import tensorflow as tf

try:  # registers the WordPiece ops a SavedModel with a text encoder inside needs
    import tensorflow_text  # noqa: F401
except ImportError:  # pragma: no cover - a dependency of this project
    pass

logger = logging.getLogger(__name__)
DEFAULT_SIGNATURE = "serving_default"
WARMUP_PATH = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit
_VERSION = re.compile(r"^\d+$")
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

    def predict(self, signature_name: str, inputs: dict, output_filter=()) -> dict:
        """Runs a signature on TensorProtos; returns ``{alias: np.ndarray}``.

        Raises:
          ServingError: the codes and messages of TF Serving's ``predict_util``.
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
        args = {}
        for i, alias in enumerate(sorted(inputs)):
            info, proto = sig.inputs[alias], inputs[alias]
            if proto.dtype != info.dtype:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, (
                    f"Expects arg[{i}] ({alias}) to be {_dtype_name(info.dtype)} but "
                    f"{_dtype_name(proto.dtype) if proto.dtype else 'invalid'} is provided"))
            try:
                value = tf.make_ndarray(proto)
            except Exception as e:  # noqa: BLE001 - any malformed TensorProto
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"tensor parsing error: {alias} ({e})") from e
            want = [d.size for d in info.tensor_shape.dim]
            if not info.tensor_shape.unknown_rank and (
                    value.ndim != len(want)
                    or any(w >= 0 and w != g for w, g in zip(want, value.shape))):
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, (
                    f"input {alias} has shape {list(value.shape)}; the signature expects "
                    f"{[w if w >= 0 else None for w in want]} (None: any size)"))
            args[alias] = tf.constant(value, dtype=tf.dtypes.as_dtype(info.dtype))
        try:
            result = self.signatures[key](**args)
        except tf.errors.OpError as e:
            raise ServingError(grpc.StatusCode(_grpc_code(e.error_code)),
                               op_error_message(e.message)) from e
        return {alias: result[alias].numpy() for alias in outputs}


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


@dataclasses.dataclass
class _VersionState:
    state: str          # "LOADING", "AVAILABLE", "END" (unloaded or failed)
    error: str = ""


class ModelManager:
    """Serves the models of a ModelServerConfig, polling their base paths for versions.

    Args:
      model_configs: ``ModelConfig`` protos (:func:`read_model_config`).
      poll_seconds: how often base paths are listed (TF Serving's
        ``--file_system_poll_wait_seconds``); 0 polls only when :meth:`poll` is called.
    """

    def __init__(self, model_configs, poll_seconds: float = 1.0):
        self.configs = {m.name: m for m in model_configs}
        self.poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._servables: dict[str, dict[int, Servable]] = {n: {} for n in self.configs}
        self._states: dict[str, dict[int, _VersionState]] = {n: {} for n in self.configs}
        self._stop = threading.Event()
        self._thread = None

    # Loading ------------------------------------------------------------------------------
    def poll(self) -> None:
        """Loads the versions the policies want and are not loaded, unloads the others."""
        with self._poll_lock:
            for name, config in self.configs.items():
                self._poll_model(name, config)

    def _poll_model(self, name, config):
        present = available_versions(config.base_path)
        wanted = wanted_versions(config.model_version_policy, present)
        if not present and not self._servables[name]:
            logger.warning("No versions of servable %s found under base path %s", name,
                           config.base_path)
        for version in wanted:
            failed = self._states[name].get(version, _VersionState("")).error
            if version in self._servables[name] or failed:
                continue  # loaded, or failed once (a new folder gets a new number)
            with self._lock:  # status() reads the states from request threads
                self._states[name][version] = _VersionState("LOADING")
            path = os.path.join(config.base_path, str(version))
            try:
                servable = Servable(name, version, path)
                warmed = warm_up(servable)
            except Exception as e:  # noqa: BLE001 - a bad version must not stop the server
                logger.error("Loading servable: {name: %s version: %d} failed: %s", name,
                             version, e)
                with self._lock:
                    self._states[name][version] = _VersionState("END", str(e))
                continue
            with self._lock:
                self._servables[name][version] = servable
                self._states[name][version] = _VersionState("AVAILABLE")
            logger.info("Successfully loaded servable version {name: %s version: %d} "
                        "(%d warm-up requests)", name, version, warmed)
        with self._lock:
            loaded = self._servables[name]
            # Unload only once a wanted version is available, so a model never goes dark.
            keep = set(wanted) & set(loaded) or set(loaded)
            for version in sorted(set(loaded) - keep):
                del loaded[version]  # in-flight requests still hold the object
                self._states[name][version] = _VersionState("END")
                logger.info("Unloaded servable version {name: %s version: %d}", name, version)

    def start(self) -> None:
        """Loads the initial versions, then polls in a background thread."""
        self.poll()
        if self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._run, name="version-poller",
                                            daemon=True)
            self._thread.start()

    def _run(self):
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - keep polling
                logger.exception("polling the model base paths failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    # Lookup -------------------------------------------------------------------------------
    def resolve(self, model_spec) -> Servable:
        """The servable a ModelSpec asks for (latest, a version, or a version label)."""
        name = model_spec.name
        if name not in self.configs:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Latest({name})")
        choice = model_spec.WhichOneof("version_choice")
        with self._lock:
            loaded = self._servables[name]
            if choice == "version_label":
                label = model_spec.version_label
                labels = self.configs[name].version_labels
                if label not in labels:
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                       f"Unrecognized servable version label: {label}")
                version = labels[label]
            elif choice == "version":
                version = model_spec.version.value
            else:
                if not loaded:
                    raise ServingError(grpc.StatusCode.NOT_FOUND,
                                       f"Servable not found for request: Latest({name})")
                return loaded[max(loaded)]
            if version not in loaded:
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Servable not found for request: Specific({name}, {version})")
            return loaded[version]

    def status(self, name: str, version: int | None = None) -> dict[int, _VersionState]:
        """``{version: state}`` of a model (TF Serving's GetModelStatus)."""
        if name not in self.configs:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find any versions of model {name}")
        with self._lock:
            states = dict(self._states[name])
        if version is not None:
            if version not in states:
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Could not find version {version} of model {name}")
            states = {version: states[version]}
        if not states:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find any versions of model {name}")
        return states

    def loaded_versions(self, name: str) -> list[int]:
        with self._lock:
            return sorted(self._servables[name])
