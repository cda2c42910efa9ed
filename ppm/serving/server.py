"""A local server of TF Serving's gRPC API, for development, tests and notebooks.

    python -m ppm.serving.server --model_config_file serving_config/models.config --port 8500

Serves the SavedModels of ``python -m ppm.export`` as TensorFlow Serving does, over the same
``--model_config_file`` and version folders (:mod:`ppm.serving.servables`), so a client cannot
tell the difference for these calls:

- ``tensorflow.serving.PredictionService/Predict``: ``model_spec`` (name, optional version or
  version_label, ``signature_name`` default ``serving_default``), ``inputs`` as TensorProtos,
  ``output_filter``; outputs as typed TensorProto fields, ``model_spec.version`` set.
- ``PredictionService/GetModelMetadata`` (``metadata_field: "signature_def"``).
- ``tensorflow.serving.ModelService/GetModelStatus``.

Every other method answers UNIMPLEMENTED. There is no REST API and no request batching (TF
Serving's ``--rest_api_port``, ``--enable_batching``): use TF Serving for those. Requests run
on a bounded thread pool (``--max_workers``); more than ``--max_concurrent_rpcs`` at once are
refused with RESOURCE_EXHAUSTED. SIGTERM or SIGINT stop accepting requests, let running ones
finish (``--grace_seconds``) and exit 0 at once: the process skips Python's teardown of the
loaded TensorFlow graphs and thread pools, which has nothing left to write and, on a busy
machine, can take longer than an orchestrator waits before it kills the process (Kubernetes'
default termination grace period is 30 s).

Versions load as TF Serving loads them (:mod:`ppm.serving.manager`): a failed load is retried
(``--max_num_load_retries``, ``--load_retry_interval_micros``), and the server accepts requests
only once every model has a version available: if a model's wanted versions all fail (a corrupt
newest version under the ``latest`` policy, say), it exits with status 1 and the reason, as TF
Serving fails to start ("Some models did not become available"); ``GetModelStatus`` reports
each version's state and load error.

A request may declare at most ``--max_rows_per_request`` rows, and its tensors must carry the
values their shapes declare (:func:`ppm.serving.tensors.declared_size`): others are refused with
INVALID_ARGUMENT before anything is allocated. A request whose gRPC deadline has passed stops
(DEADLINE_EXCEEDED) before decoding, before and after the model runs. After a request of
``--trim_memory_above_rows`` rows or more, freed memory is handed back to the system
(glibc ``malloc_trim``), so the server's RSS does not keep the peak of its largest request.

``--port 0`` picks a free port; the line ``Running gRPC ModelServer at HOST:PORT`` on stdout
says which (printed only once every model has a version available).
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import logging
import os
import platform
import signal
import sys
import threading
from concurrent import futures

import grpc

logger = logging.getLogger(__name__)
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
READY_LINE = "Running gRPC ModelServer at"
TRIM_ABOVE_ROWS = 1024  # --trim_memory_above_rows default: 5 ranking requests of 200


class ModelsUnavailableError(RuntimeError):
    """Some models have no version to serve, and waiting will not give them one."""


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None (musl, macOS: their allocators return memory
    themselves or offer no such call)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # pragma: no cover - a glibc without it
        return None


def give_back_memory() -> bool:
    """Returns freed heap memory to the system (every glibc arena); False if not possible.

    TensorFlow's CPU allocator and numpy allocate through malloc; after a large request the
    freed blocks stay in glibc's per-thread arenas and the process's RSS keeps the peak."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def time_left(context) -> float | None:
    """Seconds before the request's deadline (None: no deadline); 0 once the client is gone
    (its deadline passed on its side first, or it cancelled)."""
    if not context.is_active():
        return 0.0
    return context.time_remaining()


def _rows(inputs) -> int:
    return max((p.tensor_shape.dim[0].size for p in inputs.values() if p.tensor_shape.dim),
               default=0)


def _servicers(manager, max_rows: int, trim_above_rows: int):
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
        status_pb2,
    )

    from ppm.serving import servables, tensors

    def fail(context, error: servables.ServingError):
        context.abort(error.code, error.message)

    class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802 - gRPC method name
            rows = _rows(request.inputs)
            try:
                servable = manager.resolve(request.model_spec)
                outputs = servable.predict(request.model_spec.signature_name,
                                           dict(request.inputs), request.output_filter,
                                           max_rows=max_rows,
                                           time_remaining=lambda: time_left(context))
            except servables.ServingError as e:
                if e.code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    stats["deadline_exceeded"] += 1
                fail(context, e)
            except Exception as e:  # noqa: BLE001 - never crash on a request
                logger.exception("Predict failed")
                context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
            finally:
                if trim_above_rows and rows >= trim_above_rows and rows <= max_rows:
                    give_back_memory()
            response = predict_pb2.PredictResponse()
            spec = response.model_spec
            spec.name = servable.name
            spec.version.value = servable.version
            spec.signature_name = request.model_spec.signature_name or servables.DEFAULT_SIGNATURE
            for alias, value in outputs.items():
                response.outputs[alias].CopyFrom(tensors.to_proto(value))
            return response

        def GetModelMetadata(self, request, context):  # noqa: N802
            if list(request.metadata_field) != ["signature_def"]:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              "Metadata field signature_def is the only one supported "
                              f"(got {list(request.metadata_field)})")
            try:
                servable = manager.resolve(request.model_spec)
            except servables.ServingError as e:
                fail(context, e)
            sig_map = get_model_metadata_pb2.SignatureDefMap()
            for key, sig in servable.signature_defs.items():
                sig_map.signature_def[key].CopyFrom(sig)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.metadata["signature_def"].Pack(sig_map)
            return response

    class ModelService(model_service_pb2_grpc.ModelServiceServicer):
        def GetModelStatus(self, request, context):  # noqa: N802
            spec = request.model_spec
            version = spec.version.value if spec.HasField("version") else None
            try:
                states = manager.status(spec.name, version)
            except servables.ServingError as e:
                fail(context, e)
            response = get_model_status_pb2.GetModelStatusResponse()
            for v, st in sorted(states.items()):
                entry = response.model_version_status.add()
                entry.version = v
                entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(st.state)
                # As TF Serving: a version still retrying is LOADING with an OK status; one
                # that failed for good is END with its load error.
                failed = st.state == "END" and st.error
                entry.status.CopyFrom(status_pb2.StatusProto(
                    error_code=st.code if failed else 0,
                    error_message=st.error if failed else ""))
            return response

    stats = {"deadline_exceeded": 0}
    return PredictionService(), ModelService(), stats


class Server:
    """The gRPC server and its :class:`~ppm.serving.manager.ModelManager`.

    Args:
      model_config_file: a ModelServerConfig text file, or a list of ``ModelConfig`` protos
        (:func:`~ppm.serving.servables.model_config`).
      port: 0 picks a free one (see :attr:`port`).
      host: interface to bind (``0.0.0.0`` for all, as TF Serving).
      poll_seconds: base path polling period (TF Serving's ``--file_system_poll_wait_seconds``).
      max_workers: threads running requests.
      max_concurrent_rpcs: requests accepted at once (others get RESOURCE_EXHAUSTED).
      max_num_load_retries: load attempts after a failed one (TF Serving's flag).
      load_retry_interval: seconds between load attempts.
      max_rows_per_request: rows (first dimension) a request may declare.
      trim_above_rows: give freed memory back after requests of this many rows (0: never).
      wait_seconds: at :meth:`start`, how long to wait for a model with no version yet
        (None: as long as it takes, as TF Serving).
    """

    def __init__(self, model_config_file, port: int = 8500, host: str = "0.0.0.0",
                 poll_seconds: float = 1.0, max_workers: int = 8,
                 max_concurrent_rpcs: int = 64, max_num_load_retries: int | None = None,
                 load_retry_interval: float | None = None, max_rows_per_request: int | None = None,
                 trim_above_rows: int = TRIM_ABOVE_ROWS, wait_seconds: float | None = None):
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        from ppm.serving import manager, servables

        configs = (servables.read_model_config(model_config_file)
                   if isinstance(model_config_file, str) else list(model_config_file))
        max_rows = servables.DEFAULT_MAX_ROWS if max_rows_per_request is None \
            else max_rows_per_request
        if max_rows < 1:
            raise ValueError(f"max_rows_per_request must be >= 1, got {max_rows}")
        self.manager = manager.ModelManager(
            configs, poll_seconds=poll_seconds,
            max_num_load_retries=manager.DEFAULT_MAX_LOAD_RETRIES
            if max_num_load_retries is None else max_num_load_retries,
            load_retry_interval=manager.DEFAULT_RETRY_INTERVAL_S
            if load_retry_interval is None else load_retry_interval)
        self.wait_seconds = wait_seconds
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="predict"),
            maximum_concurrent_rpcs=max_concurrent_rpcs,
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
        prediction, model, self.stats = _servicers(self.manager, max_rows, trim_above_rows)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction,
                                                                            self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(model, self._grpc)
        self.host = host
        self.port = self._grpc.add_insecure_port(f"{host}:{port}")
        if not self.port:
            raise OSError(f"could not bind {host}:{port}")
        self._stopped = threading.Event()

    @property
    def target(self) -> str:
        host = "localhost" if self.host in ("0.0.0.0", "[::]", "::") else self.host
        return f"{host}:{self.port}"

    def start(self) -> Server:
        """Loads the initial versions (with retries), then accepts requests.

        Raises:
          ModelsUnavailableError: a model has no version to serve (every version its policy
            wants failed to load, or none exists and polling is off or ``wait_seconds``
            passed); nothing was started.
        """
        self.manager.start()
        missing = self.manager.wait_until_available(self.wait_seconds)
        if missing:
            self.manager.stop()
            raise ModelsUnavailableError(
                f"{len(missing)} model(s) did not become available: " + "; ".join(
                    f"{name}: {reason}" for name, reason in sorted(missing.items())))
        self._grpc.start()
        return self

    def stop(self, grace: float | None = 5.0) -> None:
        """Stops accepting requests, waits up to ``grace`` s for running ones, stops polling."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._grpc.stop(grace).wait()
        self.manager.stop()

    def wait(self) -> None:
        self._grpc.wait_for_termination()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv=None) -> int:
    from ppm.serving import manager, servables

    parser = argparse.ArgumentParser(
        prog="python -m ppm.serving.server", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_config_file", required=True,
                        help="ModelServerConfig text file (e.g. serving_config/models.config).")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (0: a free one).")
    parser.add_argument("--host", default="0.0.0.0", help="Interface to bind.")
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                        help="How often base paths are polled for new versions (0: never).")
    parser.add_argument("--max_num_load_retries", type=int,
                        default=manager.DEFAULT_MAX_LOAD_RETRIES,
                        help="Load attempts after a failed one (TF Serving's flag, default 5).")
    parser.add_argument("--load_retry_interval_micros", type=int,
                        default=int(manager.DEFAULT_RETRY_INTERVAL_S * 1e6),
                        help="Microseconds between load attempts (default 5 s; TF Serving's "
                             "default is 60 s).")
    parser.add_argument("--max_rows_per_request", type=int, default=servables.DEFAULT_MAX_ROWS,
                        help="Rows (first dimension) a request may declare; larger ones get "
                             "INVALID_ARGUMENT before anything is allocated.")
    parser.add_argument("--trim_memory_above_rows", type=int, default=TRIM_ABOVE_ROWS,
                        help="After a request of this many rows, return freed memory to the "
                             "system (glibc malloc_trim; 0: never).")
    parser.add_argument("--max_workers", type=int, default=8, help="Request threads.")
    parser.add_argument("--max_concurrent_rpcs", type=int, default=64,
                        help="Requests accepted at once; more get RESOURCE_EXHAUSTED.")
    parser.add_argument("--grace_seconds", type=float, default=5.0,
                        help="On SIGTERM/SIGINT, how long running requests may finish.")
    args = parser.parse_args(argv)
    if args.max_workers < 1 or args.max_concurrent_rpcs < 1:
        parser.error("--max_workers and --max_concurrent_rpcs must be >= 1")
    if args.max_num_load_retries < 0 or args.load_retry_interval_micros < 0:
        parser.error("--max_num_load_retries and --load_retry_interval_micros must be >= 0")
    if args.max_rows_per_request < 1 or args.trim_memory_above_rows < 0:
        parser.error("--max_rows_per_request must be >= 1, --trim_memory_above_rows >= 0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        server = Server(args.model_config_file, args.port, args.host,
                        args.file_system_poll_wait_seconds, args.max_workers,
                        args.max_concurrent_rpcs, args.max_num_load_retries,
                        args.load_retry_interval_micros / 1e6, args.max_rows_per_request,
                        args.trim_memory_above_rows)
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    done = threading.Event()

    def _stop(signum, _frame):
        logger.info("Received %s: stopping (grace %.1f s)", signal.Signals(signum).name,
                    args.grace_seconds)
        done.set()
        server.manager.interrupt()  # also ends a wait for the first versions

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.start()
    except ModelsUnavailableError as e:
        if done.is_set():  # stopped by a signal while waiting for the first versions
            return 0
        logger.error("%s", e)
        print(f"error: the server did not start: {e}", file=sys.stderr)
        return 1
    for name in server.manager.configs:
        logger.info("Model %s: versions %s loaded", name, server.manager.loaded_versions(name))
    print(f"{READY_LINE} {args.host}:{server.port} ...", flush=True)
    done.wait()
    server.stop(args.grace_seconds)
    logger.info("Server stopped")
    return 0


def _exit_now(status: int) -> None:
    """Flushes the logs and the standard streams, then ends the process without tearing
    down the interpreter (see the module docstring)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


if __name__ == "__main__":
    _exit_now(main())
