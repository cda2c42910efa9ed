"""ppm.serving.server under a careless operator and a hostile client, over gRPC on loopback:
a broken newest version, a version copied non-atomically, inflated tensors, oversized
requests, expired deadlines."""

import os
import re
import shutil
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest

import ppm  # noqa: F401
from ppm.serving import client, servables, server

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _wait(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)


def _rss_mb(pid="self") -> float:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) / 1024


def _model_dir(exported, tmp_path, corrupt=()):
    """A base path with version 1 of the tiny URM and a random saved_model.pb per ``corrupt``."""
    model_dir = tmp_path / "urm"
    shutil.copytree(os.path.join(exported, "1"), model_dir / "1")
    for version in corrupt:
        os.makedirs(model_dir / str(version))
        (model_dir / str(version) / "saved_model.pb").write_bytes(
            np.random.default_rng(version).bytes(2048))
    return str(model_dir)


def _status(target, version=None):
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "urm"
    if version is not None:
        request.model_spec.version.value = version
    with grpc.insecure_channel(target) as channel:
        response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            request, timeout=30)
    return {s.version: (get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
                        s.status.error_code, s.status.error_message)
            for s in response.model_version_status}


def test_corrupt_newest_version_is_never_served_dark(exported, tmp_path):
    """TF Serving fails to start when the versions its policy wants do not load; it never
    serves NOT_FOUND behind a ready line."""
    model_dir = _model_dir(exported, tmp_path, corrupt=[3])
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "urm" base_path: "{model_dir}" '
                      'model_platform: "tensorflow" } }')
    proc = subprocess.run(
        [sys.executable, "-m", "ppm.serving.server", "--model_config_file", str(config),
         "--port", "0", "--host", "127.0.0.1", "--max_num_load_retries", "1",
         "--load_retry_interval_micros", "100000"],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert server.READY_LINE not in proc.stdout
    assert "1 model(s) did not become available" in proc.stderr
    assert re.search(r"version 3: failed to load \S+ after 2 attempts", proc.stderr)
    assert "Versions [1] are present" in proc.stderr  # how to get served again

    # A policy that also wants version 1 serves it; GetModelStatus tells both truths.
    config = servables.model_config("urm", model_dir)
    config.model_version_policy.latest.num_versions = 2
    with server.Server([config], port=0, host="127.0.0.1", poll_seconds=0,
                       max_num_load_retries=1, load_retry_interval=0.05) as srv:
        states = _status(srv.target)
        assert states[1] == ("AVAILABLE", 0, "")
        state, code, message = states[3]
        assert state == "END" and code != 0 and "after 2 attempts" in message
        assert _status(srv.target, 3) == {3: states[3]}
    with pytest.raises(server.ModelsUnavailableError, match="version 3: failed to load"):
        server.Server([servables.model_config("urm", model_dir)], port=0, host="127.0.0.1",
                      poll_seconds=0, max_num_load_retries=0).start()


def test_version_copied_non_atomically_loads_once_complete(exported, request_features,
                                                          tmp_path):
    model_dir = _model_dir(exported, tmp_path)
    inputs, _ = request_features
    with server.Server([servables.model_config("urm", model_dir)], port=0, host="127.0.0.1",
                       poll_seconds=0.1, max_num_load_retries=1000,
                       load_retry_interval=0.1) as srv, \
            client.Client(srv.target, "urm", timeout=30) as c:
        # What cp -r or a cloud copy does: saved_model.pb first, the variables later.
        src, dst = os.path.join(exported, "1"), os.path.join(model_dir, "2")
        os.makedirs(dst)
        shutil.copy(os.path.join(src, "saved_model.pb"), dst)
        _wait(lambda: getattr(srv.manager.status("urm").get(2), "attempts", 0) >= 2)
        assert _status(srv.target, 2) == {2: ("LOADING", 0, "")}  # retrying, as TF Serving
        c.predict(inputs)
        assert c.last_version == 1  # still served meanwhile
        for name in sorted(os.listdir(src)):
            if name != "saved_model.pb":
                copy = shutil.copytree if os.path.isdir(os.path.join(src, name)) else shutil.copy
                copy(os.path.join(src, name), os.path.join(dst, name))
        _wait(lambda: _status(srv.target).get(2, ("",))[0] == "AVAILABLE")
        assert c.predict(inputs)["p_click"].shape == (16,) and c.last_version == 2
        assert _status(srv.target)[1][0] == "END"


def _with(request, alias, **fields):
    """``request`` with input ``alias`` replaced by a TensorProto of ``fields``."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2

    proto = tensor_pb2.TensorProto(dtype=request.inputs[alias].dtype)
    shape = fields.pop("shape")
    proto.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in shape]))
    for name, value in fields.items():
        if name == "tensor_content":
            proto.tensor_content = value
        else:
            getattr(proto, name).extend(value)
    request.inputs[alias].CopyFrom(proto)
    return request


@pytest.fixture(scope="module")
def limited(exported):
    """One request thread, at most 8 rows a request."""
    with server.Server([servables.model_config("urm", exported)], port=0, host="127.0.0.1",
                       poll_seconds=0, max_workers=1, max_rows_per_request=8) as srv:
        yield srv


@pytest.fixture(scope="module")
def default_server(exported):
    with server.Server([servables.model_config("urm", exported)], port=0, host="127.0.0.1",
                       poll_seconds=0) as srv:
        yield srv


def _predict(target, request):
    with grpc.insecure_channel(target) as channel:
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(request, timeout=60)
    return e.value.code(), e.value.details()


def test_inflated_tensor_is_refused_before_any_allocation(default_server, request_features):
    """2 KB declaring 150 million elements: refused at once, nothing expanded."""
    inputs, _ = request_features
    before = _rss_mb()
    request = _with(client.predict_request("urm", inputs), "position",
                    shape=[150_000_000], int64_val=[0])
    assert request.ByteSize() < 64 * 1024
    code, message = _predict(default_server.target, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert ("input position declares 150000000 rows, more than the 8192 a request may hold "
            "(--max_rows_per_request)") in message
    # Within the rows, a string history that would expand to gigabytes.
    request = _with(client.predict_request("urm", inputs), "hist_item_id",
                    shape=[16, 10**9], string_val=[b"item-0001"])
    code, message = _predict(default_server.target, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "would take" in message and "once decoded" in message
    assert _rss_mb() - before < 500
    with client.Client(default_server.target, "urm", timeout=30) as c:  # unharmed
        assert c.predict(inputs)["p_click"].shape == (16,)


@pytest.mark.parametrize("fields, reason", [
    ({"shape": [16], "int64_val": list(range(20))},
     "input position has 20 values, more than the 16 elements of its shape [16]"),
    ({"shape": [16], "int64_val": [1, 2, 3]},
     "input position has 3 values for the 16 elements of its shape [16]"),
    ({"shape": [16], "int64_val": []}, "input position has 0 values for the 16 elements"),
    ({"shape": [-1], "int64_val": [1]}, "input position has shape [-1]: a request tensor's "
     "dimensions must be known and >= 0"),
    ({"shape": [16], "tensor_content": b"\0" * 10},
     "input position has 10 bytes of tensor_content; its shape [16] of int64 needs "
     "16 x 8 = 128"),
    ({"shape": [16], "float_val": [1.0] * 16},
     "input position is int64 but has values in ['float_val'] (its values go in int64_val)"),
])
def test_malformed_tensors_say_the_right_reason(fields, reason, default_server,
                                                request_features):
    inputs, _ = request_features
    request = _with(client.predict_request("urm", inputs), "position", **fields)
    code, message = _predict(default_server.target, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in message, message


def test_rows_per_request_are_capped(limited, request_features):
    inputs, _ = request_features
    code, message = _predict(limited.target, client.predict_request("urm", inputs))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "declares 16 rows, more than the 8 a request may hold" in message
    with client.Client(limited.target, "urm", timeout=30) as c:
        assert c.predict({k: v[:8] for k, v in inputs.items()})["p_click"].shape == (8,)


def test_request_past_its_deadline_is_not_run(limited, request_features, monkeypatch):
    """A request whose deadline passes while the server works on it stops there: the model
    never runs for an answer nobody waits for. (gRPC itself drops a request that expires
    while queued, before reading it.)"""
    from ppm.serving import tensors

    inputs, _ = request_features
    inputs = {k: v[:8] for k, v in inputs.items()}
    servable = limited.manager.resolve(client.predict_request("urm", {}).model_spec)
    signature = servable.signatures["serving_default"]
    entered, release, calls, first = threading.Event(), threading.Event(), [], []
    checked = tensors.declared_size

    def slow(*args, **kwargs):  # the first request's checks outlast its deadline
        if not first:
            first.append(time.monotonic())  # the server got the request before this
            entered.set()
            release.wait(60)
        return checked(*args, **kwargs)

    def counted(**kwargs):
        calls.append(1)
        return signature(**kwargs)

    monkeypatch.setattr(tensors, "declared_size", slow)
    servable.signatures["serving_default"] = counted
    try:
        with client.Client(limited.target, "urm", timeout=60) as c:
            with pytest.raises(grpc.RpcError) as e:
                c.prediction.Predict(client.predict_request("urm", inputs), timeout=1.0)
            assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and entered.is_set()
            # The server's deadline (its arrival + 1 s) has passed too, however late it came.
            _wait(lambda: time.monotonic() > first[0] + 1.1)
            release.set()
            _wait(lambda: limited.stats["deadline_exceeded"] == 1)
            assert calls == []
            assert c.predict(inputs)["p_click"].shape == (8,) and calls == [1]
    finally:
        release.set()
        servable.signatures["serving_default"] = signature
