"""A client of TF Serving's gRPC API (real TF Serving or :mod:`ppm.serving.server`).

    python -m ppm.serving.client --target localhost:8500 --model urm --request request.json

Python::

    from ppm.serving.client import Client
    with Client("localhost:8500", "urm") as client:
        scores = client.predict({"item_id": [...], ...})       # {"p_click": np.ndarray, ...}
        ranked = client.rank({"user": {...}, "candidates": [...]})

A **feature dict** maps every input of the signature (``GetModelMetadata``) to a list or array
with one row per candidate. A **ranking request** is one user and N candidate items::

    {"user": {"hist_item_id": [...], "hist_shop_id": [...], "hist_brand_id": [...],
              "hist_category_id": [...], "hist_position": [...], "hist_recency": [...],
              "user_<profile>": "..."},
     "candidates": [{"item_id": "...", "shop_id": "...", "brand_id": "...",
                     "category_id": "...", "position": 0}, ...]}

It becomes a batch of N rows: candidate fields per row, user fields repeated (a search
model's ``query`` is a user field: one per request). :meth:`Client.rank` sends it to the
model's listwise signature (``rank_listwise``: the user fields once, the candidates ``[1, N]``)
when the model has one, else as the N rows. ``hist_len`` is
the history's length unless given. ``position`` is the display slot the candidate is scored
for; a ranker does not know it yet, so it defaults to 0 (every candidate scored as if shown
first: the position effect is the same for all and the order comes from the rest). Every
signature input must be given (or be one of these two defaults) and every given field must be
a signature input: nothing is dropped silently.

The same JSON file may instead hold ``{"inputs": {name: [...]}}`` (TF Serving's columnar
format). Calls have a deadline (``timeout`` seconds); errors are ``grpc.RpcError`` with TF
Serving's status code.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence

import grpc
import numpy as np
import tensorflow as tf

from ppm.features import OPTIONAL_INPUTS
from ppm.serving import tensors

DEFAULT_SIGNATURE = "serving_default"
LISTWISE_SIGNATURE, CANDIDATE_MASK = "rank_listwise", "candidate_mask"  # ppm.export's
DEFAULT_POSITION = 0
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


def channel(target: str) -> grpc.Channel:
    """An insecure channel to ``target`` that sends and receives large ranking messages."""
    return grpc.insecure_channel(
        target, options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                         ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])


def predict_request(model: str, inputs: Mapping[str, np.ndarray],
                    signature: str = DEFAULT_SIGNATURE, version: int | None = None,
                    version_label: str | None = None, output_filter: Sequence[str] = ()):
    """A ``PredictRequest`` from ``{name: array}`` (dtype as given)."""
    from tensorflow_serving.apis import predict_pb2

    if version is not None and version_label is not None:
        raise ValueError("give a version or a version_label, not both")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = int(version)
    if version_label is not None:
        request.model_spec.version_label = version_label
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tensors.to_proto(value, packed=True))
    request.output_filter.extend(output_filter)
    return request


def ranking_features(request: Mapping, signature_inputs: Mapping[str, tuple]) -> dict:
    """Turns a ranking request into a feature dict (one row per candidate).

    Args:
      request: ``{"user": {...}, "candidates": [{...}, ...]}`` (module docstring).
      signature_inputs: ``{name: (tf.DType, shape)}`` of the signature
        (:meth:`Client.signature_inputs`).

    Raises:
      ValueError: no candidates, a field that is not an input, a missing input, candidates
        with different fields, or history fields of different lengths.
    """
    user = dict(request.get("user", {}))
    candidates = list(request.get("candidates", ()))
    extra = set(request) - {"user", "candidates"}
    if extra:
        raise ValueError(f"unknown ranking request keys {sorted(extra)} "
                         "(expected 'user' and 'candidates')")
    if not candidates:
        raise ValueError("a ranking request needs at least one candidate")
    fields = set(candidates[0])
    for i, c in enumerate(candidates):
        if set(c) != fields:
            raise ValueError(f"candidate {i} has fields {sorted(c)}, candidate 0 has "
                             f"{sorted(fields)}: give every candidate the same fields")
    # Optional inputs (DSIN's hist_session) that this model does not read are ignored.
    unknown = sorted((set(user) | fields) - set(signature_inputs) - set(OPTIONAL_INPUTS))
    if unknown:
        raise ValueError(f"fields {unknown} are not inputs of the model "
                         f"(inputs: {sorted(signature_inputs)})")
    both = sorted(set(user) & fields)
    if both:
        raise ValueError(f"fields {both} are given for the user and for candidates")
    n = len(candidates)
    sequences = {k for k, (_, shape) in signature_inputs.items() if len(shape) == 2}
    lengths = {k: len(user[k]) for k in sequences & set(user)}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"history fields have different lengths: {lengths}")
    out = {}
    for name, (dtype, shape) in signature_inputs.items():
        np_dtype = object if dtype == tf.string else dtype.as_numpy_dtype
        if name in fields:
            value = np.array([c[name] for c in candidates], dtype=np_dtype)
        elif name in user:
            row = np.array(user[name], dtype=np_dtype)
            value = np.broadcast_to(row, (n,) + row.shape)
        elif name == "position":
            value = np.full([n], DEFAULT_POSITION, np_dtype)
        elif name == "hist_len" and lengths:
            value = np.full([n], next(iter(lengths.values())), np_dtype)
        else:
            raise ValueError(f"the request has no {name!r} (an input of the model); "
                             "put it in 'user' or in every candidate")
        if value.ndim != len(shape):
            raise ValueError(f"{name} must have {len(shape) - 1} dimension(s) per candidate, "
                             f"got shape {value.shape[1:]}")
        out[name] = value
    return out


def listwise_inputs(pointwise: Mapping[str, np.ndarray], ranks: Mapping[str, int]) -> dict:
    """The ``rank_listwise`` inputs of one request from its pointwise features (one row per
    candidate, :func:`ranking_features`): candidate inputs (rank 2 in the listwise signature,
    rank 1 per candidate) become ``[1, N]``, the request's inputs their first row, and
    ``candidate_mask`` all ones. ``ranks``: ``{input: rank}`` of the listwise signature."""
    n = len(next(iter(pointwise.values())))
    out = {}
    for name, rank in ranks.items():
        if name == CANDIDATE_MASK:
            out[name] = np.ones([1, n], np.int64)
        elif rank == 2 and np.asarray(pointwise[name]).ndim == 1:
            out[name] = np.asarray(pointwise[name])[None, :]
        else:
            out[name] = np.asarray(pointwise[name])[:1]
    return out


class Client:
    """Calls one model of a TF Serving (or :mod:`ppm.serving.server`) endpoint.

    Args:
      target: ``host:port`` of the gRPC endpoint.
      model: model name (``ModelSpec.name``).
      signature: signature name.
      version / version_label: pin a version (default: the latest the server has).
      timeout: deadline of every call, in seconds.
    """

    def __init__(self, target: str, model: str, signature: str = DEFAULT_SIGNATURE,
                 version: int | None = None, version_label: str | None = None,
                 timeout: float = 10.0):
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self.model, self.signature, self.timeout = model, signature, timeout
        self.version, self.version_label = version, version_label
        self.channel = channel(target)
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self._inputs = self._metadata = None
        self.last_version = None  # version that answered the last predict()

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Blocks until the channel is connected (raises ``grpc.FutureTimeoutError``)."""
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def _spec(self, spec):
        spec.name = self.model
        if self.version is not None:
            spec.version.value = self.version
        if self.version_label is not None:
            spec.version_label = self.version_label

    def predict_raw(self, inputs: Mapping[str, np.ndarray], output_filter=(),
                    signature: str | None = None):
        """Sends arrays as they are (to ``signature``, by default the client's); returns the
        ``PredictResponse``."""
        request = predict_request(self.model, inputs, signature or self.signature,
                                  self.version, self.version_label, output_filter)
        return self.prediction.Predict(request, timeout=self.timeout)

    def _outputs(self, response) -> dict:
        """``{output: np.ndarray}`` of a ``PredictResponse``; records the version that
        answered."""
        self.last_version = response.model_spec.version.value
        return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}

    def predict(self, features: Mapping[str, Sequence], output_filter=()) -> dict:
        """Scores a feature dict; returns ``{output: np.ndarray}``.

        Values are cast to the signature's dtypes (so JSON lists work). Optional inputs
        (``ppm.features.OPTIONAL_INPUTS``) the model does not read are left out. Raises
        ValueError for another name that is not an input; the server answers the rest.
        """
        spec = self.signature_inputs()
        features = {k: v for k, v in features.items()
                    if k in spec or k not in OPTIONAL_INPUTS}
        unknown = sorted(set(features) - set(spec))
        if unknown:
            raise ValueError(f"{unknown} are not inputs of {self.model} "
                             f"(inputs: {sorted(spec)})")
        inputs = {k: np.asarray(v, dtype=object if spec[k][0] == tf.string
                                else spec[k][0].as_numpy_dtype)
                  for k, v in features.items()}
        return self._outputs(self.predict_raw(inputs, output_filter))

    def rank(self, request: Mapping, score: str = "p_click",
             listwise: bool | None = None) -> dict:
        """Scores a ranking request; returns its outputs plus ``order`` (best first by
        ``score``) and ``item_id`` of the candidates.

        The request goes to the model's listwise signature (``rank_listwise``: the user sent
        once) when the model has one, else to the pointwise one (one row per candidate);
        ``listwise`` forces the choice. Both give the same scores."""
        if listwise is None:
            listwise = LISTWISE_SIGNATURE in self.metadata_cached().signature_def
        if listwise:
            response = self.predict_raw(self.listwise_features(request),
                                        signature=LISTWISE_SIGNATURE)
            out = {k: v[0] for k, v in self._outputs(response).items()}
        else:
            out = self.predict(ranking_features(request, self.signature_inputs()))
        if score not in out:
            raise ValueError(f"score {score!r} is not an output ({sorted(out)})")
        out["order"] = np.argsort(-out[score], kind="stable")
        out["item_id"] = np.array([c.get("item_id", "") for c in request["candidates"]],
                                  dtype=object)
        return out

    def metadata(self):
        """The model's ``SignatureDefMap`` (GetModelMetadata)."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self._spec(request.model_spec)
        request.metadata_field.append("signature_def")
        response = self.prediction.GetModelMetadata(request, timeout=self.timeout)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(sig_map)
        return sig_map

    def listwise_features(self, request: Mapping) -> dict:
        """The ``rank_listwise`` inputs of a ranking request (:func:`listwise_inputs` of its
        :func:`ranking_features`, ranked as the model's listwise signature asks)."""
        spec = self.metadata_cached().signature_def[LISTWISE_SIGNATURE].inputs
        return listwise_inputs(ranking_features(request, self.signature_inputs()),
                               {k: len(v.tensor_shape.dim) for k, v in spec.items()})

    def metadata_cached(self):
        """:meth:`metadata`, asked once."""
        if self._metadata is None:
            self._metadata = self.metadata()
        return self._metadata

    def signature_inputs(self) -> dict:
        """``{input: (tf.DType, shape)}`` of the signature (asked once, then cached)."""
        if self._inputs is None:
            sig_map = self.metadata_cached()
            if self.signature not in sig_map.signature_def:
                raise ValueError(f"model {self.model} has no signature {self.signature!r} "
                                 f"(it has {sorted(sig_map.signature_def)})")
            sig = sig_map.signature_def[self.signature]
            self._inputs = {k: (tf.dtypes.as_dtype(v.dtype),
                                [d.size for d in v.tensor_shape.dim])
                            for k, v in sig.inputs.items()}
        return self._inputs

    def status(self) -> dict:
        """``{version: state name}`` (GetModelStatus)."""
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec)
        response = self.models.GetModelStatus(request, timeout=self.timeout)
        return {s.version: get_model_status_pb2.ModelVersionStatus.State.Name(s.state)
                for s in response.model_version_status}


def format_ranking(result: Mapping, top: int | None = None) -> str:
    """A table of candidates, best first."""
    outputs = sorted(k for k in result if k.startswith("p_"))
    lines = [f"{'rank':>4}  {'item_id':<20}" + "".join(f"{o:>10}" for o in outputs)]
    for r, i in enumerate(result["order"][:top]):
        lines.append(f"{r + 1:>4}  {str(_text(result['item_id'][i])):<20}"
                     + "".join(f"{result[o][i]:>10.4f}" for o in outputs))
    return "\n".join(lines)


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ppm.serving.client", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="localhost:8500", help="host:port of the server.")
    parser.add_argument("--model", required=True, help="Model name.")
    parser.add_argument("--request", required=True,
                        help="JSON file: a ranking request or {'inputs': {...}}.")
    parser.add_argument("--signature", default=DEFAULT_SIGNATURE)
    parser.add_argument("--version", type=int, default=None)
    parser.add_argument("--version_label", default=None)
    parser.add_argument("--timeout", type=float, default=10.0, help="Deadline in seconds.")
    parser.add_argument("--score", default="p_click", help="Output that orders candidates.")
    parser.add_argument("--top", type=int, default=None, help="Print only the best N.")
    args = parser.parse_args(argv)
    try:
        with open(args.request) as f:
            request = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        parser.error(f"cannot read --request {args.request}: {e}")
    if args.version is not None and args.version_label is not None:
        parser.error("give --version or --version_label, not both")
    with Client(args.target, args.model, args.signature, args.version, args.version_label,
                args.timeout) as client:
        try:
            if "inputs" in request:
                out = client.predict(request["inputs"])
                print(json.dumps({k: v.tolist() for k, v in out.items()}))
            else:
                out = client.rank(request, args.score)
                print(f"model {args.model} version {client.last_version}")
                print(format_ranking(out, args.top))
        except grpc.RpcError as e:
            print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
