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
finish (``--grace_seconds``) and exit 0.

``--port 0`` picks a free port; the line ``Running gRPC ModelServer at HOST:PORT`` on stdout
says which.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from concurrent import futures

import grpc

logger = logging.getLogger(__name__)
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
READY_LINE = "Running gRPC ModelServer at"


def _servicers(manager):
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
            try:
                servable = manager.resolve(request.model_spec)
                outputs = servable.predict(request.model_spec.signature_name,
                                           dict(request.inputs), request.output_filter)
            except servables.ServingError as e:
                fail(context, e)
            except Exception as e:  # noqa: BLE001 - never crash on a request
                logger.exception("Predict failed")
                context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
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
                entry.status.CopyFrom(status_pb2.StatusProto(
                    error_code=2 if st.error else 0, error_message=st.error))
            return response

    return PredictionService(), ModelService()


class Server:
    """The gRPC server and its :class:`~ppm.serving.servables.ModelManager`.

    Args:
      model_config_file: a ModelServerConfig text file, or a list of ``ModelConfig`` protos
        (:func:`~ppm.serving.servables.model_config`).
      port: 0 picks a free one (see :attr:`port`).
      host: interface to bind (``0.0.0.0`` for all, as TF Serving).
      poll_seconds: base path polling period (TF Serving's ``--file_system_poll_wait_seconds``).
      max_workers: threads running requests.
      max_concurrent_rpcs: requests accepted at once (others get RESOURCE_EXHAUSTED).
    """

    def __init__(self, model_config_file, port: int = 8500, host: str = "0.0.0.0",
                 poll_seconds: float = 1.0, max_workers: int = 8,
                 max_concurrent_rpcs: int = 64):
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        from ppm.serving import servables

        configs = (servables.read_model_config(model_config_file)
                   if isinstance(model_config_file, str) else list(model_config_file))
        self.manager = servables.ModelManager(configs, poll_seconds=poll_seconds)
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="predict"),
            maximum_concurrent_rpcs=max_concurrent_rpcs,
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
        prediction, model = _servicers(self.manager)
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
        """Loads the initial versions, starts polling, then accepts requests."""
        self.manager.start()
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
    parser = argparse.ArgumentParser(
        prog="python -m ppm.serving.server", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_config_file", required=True,
                        help="ModelServerConfig text file (e.g. serving_config/models.config).")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (0: a free one).")
    parser.add_argument("--host", default="0.0.0.0", help="Interface to bind.")
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                        help="How often base paths are polled for new versions (0: never).")
    parser.add_argument("--max_workers", type=int, default=8, help="Request threads.")
    parser.add_argument("--max_concurrent_rpcs", type=int, default=64,
                        help="Requests accepted at once; more get RESOURCE_EXHAUSTED.")
    parser.add_argument("--grace_seconds", type=float, default=5.0,
                        help="On SIGTERM/SIGINT, how long running requests may finish.")
    args = parser.parse_args(argv)
    if args.max_workers < 1 or args.max_concurrent_rpcs < 1:
        parser.error("--max_workers and --max_concurrent_rpcs must be >= 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        server = Server(args.model_config_file, args.port, args.host,
                        args.file_system_poll_wait_seconds, args.max_workers,
                        args.max_concurrent_rpcs)
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    done = threading.Event()

    def _stop(signum, _frame):
        logger.info("Received %s: stopping (grace %.1f s)", signal.Signals(signum).name,
                    args.grace_seconds)
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server.start()
    for name in server.manager.configs:
        logger.info("Model %s: versions %s loaded", name, server.manager.loaded_versions(name))
    print(f"{READY_LINE} {args.host}:{server.port} ...", flush=True)
    done.wait()
    server.stop(args.grace_seconds)
    logger.info("Server stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
