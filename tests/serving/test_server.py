"""ppm.serving: the local TF Serving gRPC server and the client, over real gRPC on loopback."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf

import ppm  # noqa: F401
from ppm import evaluate
from ppm.serving import client, requests, servables, server

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def serving(exported):
    config = servables.model_config("urm", exported)
    config.version_labels["stable"] = 1
    with server.Server([config], port=0, host="127.0.0.1", poll_seconds=0) as srv:
        yield srv


@pytest.fixture(scope="module")
def urm_client(serving):
    with client.Client(serving.target, "urm", timeout=30) as c:
        yield c


def test_grpc_round_trip_equals_in_process_model(tiny_urm_run, urm_client, request_features):
    inputs, feats = request_features
    model, _, _ = evaluate.load_model(tiny_urm_run)
    expected = model.probabilities(feats)
    got = urm_client.predict(inputs)
    assert urm_client.last_version == 1
    assert sorted(got) == ["p_cart", "p_click", "p_order"]
    for task in ("click", "order", "cart"):
        assert got[f"p_{task}"].dtype == np.float32 and got[f"p_{task}"].shape == (16,)
        np.testing.assert_allclose(got[f"p_{task}"], expected[task].numpy(), rtol=1e-5,
                                   atol=1e-6)
    # Outputs come as typed fields, as TF Serving sends them; output_filter selects.
    response = urm_client.predict_raw(inputs, output_filter=["p_order"])
    assert list(response.outputs) == ["p_order"]
    assert len(response.outputs["p_order"].float_val) == 16
    assert response.model_spec.signature_name == "serving_default"


def test_ranking_request_and_cli(urm_client, serving, tiny_world, tiny_examples, tmp_path,
                                 capsys):
    examples, _ = tiny_examples
    request = requests.sample_ranking_request(examples, os.path.join(tiny_world,
                                              "items.parquet"), num_candidates=30, history=50)
    assert len(request["candidates"]) == 30
    assert request["user"]["hist_len"] == len(request["user"]["hist_item_id"]) > 0
    ranked = urm_client.rank(request)
    feats = client.ranking_features(request, urm_client.signature_inputs())
    assert (feats["position"] == client.DEFAULT_POSITION).all()
    assert (feats["hist_item_id"] == np.array(request["user"]["hist_item_id"], object)).all()
    direct = urm_client.predict(feats)
    np.testing.assert_array_equal(ranked["p_click"], direct["p_click"])
    assert list(ranked["p_click"][ranked["order"]]) == sorted(ranked["p_click"], reverse=True)
    # Each candidate is scored on its own: its score does not depend on the others.
    alone = urm_client.rank({"user": request["user"], "candidates": request["candidates"][:1]})
    np.testing.assert_allclose(alone["p_click"][0], ranked["p_click"][0], rtol=1e-5)

    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    assert client.main(["--target", serving.target, "--model", "urm", "--request", str(path),
                        "--top", "3"]) == 0
    out = capsys.readouterr().out
    best = ranked["item_id"][ranked["order"][0]]
    assert "version 1" in out and re.search(rf"^\s+1\s+{best}\s", out, re.M)
    path.write_text(json.dumps({"inputs": {k: v.tolist() for k, v in feats.items()}}))
    assert client.main(["--target", serving.target, "--model", "urm", "--request",
                        str(path)]) == 0
    assert np.allclose(json.loads(capsys.readouterr().out)["p_click"], direct["p_click"])
    path.write_text(json.dumps({"user": request["user"],
                                "candidates": [{"item_id": "x", "colour": "red"}]}))
    assert client.main(["--target", serving.target, "--model", "urm", "--request",
                        str(path)]) == 2
    assert "['colour'] are not inputs" in capsys.readouterr().err.replace("fields ", "")


def test_ranking_request_errors_are_clear():
    spec = {"item_id": (tf.string, [-1]), "position": (tf.int64, [-1]),
            "hist_item_id": (tf.string, [-1, -1]), "hist_recency": (tf.int64, [-1, -1]),
            "hist_len": (tf.int64, [-1]), "user_age": (tf.string, [-1])}
    user = {"hist_item_id": ["a", "b"], "hist_recency": [1, 2], "user_age": "30"}
    feats = client.ranking_features({"user": user, "candidates": [{"item_id": "c"}] * 3}, spec)
    assert feats["hist_len"].tolist() == [2, 2, 2] and feats["position"].tolist() == [0, 0, 0]
    assert feats["hist_recency"].shape == (3, 2) and feats["user_age"].tolist() == ["30"] * 3
    for bad, match in [
            ({"user": user, "candidates": []}, "at least one candidate"),
            ({"user": {**user, "hist_recency": [1]}, "candidates": [{"item_id": "c"}]},
             "different lengths"),
            ({"user": {"hist_item_id": ["a"]}, "candidates": [{"item_id": "c"}]},
             "no 'hist_recency'"),
            ({"user": user, "candidates": [{"item_id": "c"}, {"item_id": "d", "position": 1}]},
             "same fields"),
            ({"user": user, "candidates": [{"item_id": "c", "user_age": "1"}]},
             "for the user and for candidates"),
            ({"user": user, "candidates": [{"item_id": "c"}], "extra": 1}, "unknown ranking")]:
        with pytest.raises(ValueError, match=match):
            client.ranking_features(bad, spec)


def _inconsistent(inputs):
    cases = {}
    cases["missing input"] = {k: v for k, v in inputs.items() if k != "position"}
    cases["unexpected input"] = {**inputs, "colour": np.zeros(16, np.int64)}
    cases["wrong dtype"] = {**inputs, "position": inputs["position"].astype(np.float32)}
    cases["wrong rank"] = {**inputs, "position": inputs["position"].reshape(16, 1)}
    cases["batch sizes differ"] = {**inputs, "position": inputs["position"][:3]}
    cases["history lengths differ"] = {**inputs, "hist_recency": inputs["hist_recency"][:, :2]}
    cases["hist_len above the history sent"] = {
        **inputs, "hist_len": np.full(16, inputs["hist_item_id"].shape[1] + 1, np.int64)}
    return cases


BAD_INPUTS = ["missing input", "unexpected input", "wrong dtype", "wrong rank",
              "batch sizes differ", "history lengths differ", "hist_len above the history sent"]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_inputs_are_invalid_argument(case, urm_client, request_features):
    inputs, _ = request_features
    bad = _inconsistent(inputs)[case]
    request = client.predict_request("urm", bad)
    with pytest.raises(grpc.RpcError) as e:
        urm_client.prediction.Predict(request, timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert "Graph execution error" not in e.value.details()
    # The server is unharmed.
    assert urm_client.predict(inputs)["p_click"].shape == (16,)


@pytest.mark.parametrize("spec, code, message", [
    ({"name": "nope"}, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
    ({"name": "urm", "version": 9}, grpc.StatusCode.NOT_FOUND, "Specific(urm, 9)"),
    ({"name": "urm", "version_label": "canary"}, grpc.StatusCode.INVALID_ARGUMENT,
     "Unrecognized servable version label: canary"),
    # TF Serving answers FAILED_PRECONDITION for an unknown signature (predict_util.cc).
    ({"name": "urm", "signature": "nope"}, grpc.StatusCode.FAILED_PRECONDITION,
     'Serving signature key "nope" not found.'),
    ({"name": "urm", "output_filter": ["p_nope"]}, grpc.StatusCode.INVALID_ARGUMENT,
     "output tensor alias not found in signature: p_nope")])
def test_unknown_model_version_label_signature_output(spec, code, message, urm_client,
                                                       request_features):
    inputs, _ = request_features
    request = client.predict_request(
        spec["name"], inputs, signature=spec.get("signature", "serving_default"),
        version=spec.get("version"), version_label=spec.get("version_label"),
        output_filter=spec.get("output_filter", ()))
    with pytest.raises(grpc.RpcError) as e:
        urm_client.prediction.Predict(request, timeout=30)
    assert e.value.code() == code and message in e.value.details()


def test_version_label_metadata_status_and_unimplemented(serving, request_features):
    inputs, _ = request_features
    with client.Client(serving.target, "urm", version_label="stable") as c:
        assert c.predict(inputs)["p_click"].shape == (16,) and c.last_version == 1
        sig_map = c.metadata()
        assert "serving_default" in sig_map.signature_def
        sig = sig_map.signature_def["serving_default"]
        assert set(sig.inputs) == set(inputs)
        assert set(sig.outputs) == {"p_click", "p_order", "p_cart"}
        assert c.status() == {1: "AVAILABLE"}
    with client.Client(serving.target, "urm", version=5) as c, \
            pytest.raises(grpc.RpcError) as e:
        c.status()
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    from tensorflow_serving.apis import classification_pb2

    with client.Client(serving.target, "urm") as c, pytest.raises(grpc.RpcError) as e:
        c.prediction.Classify(classification_pb2.ClassificationRequest(), timeout=10)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def _copy_version(model_dir, src, dst):
    """A new version appears as ppm.export writes it: a hidden folder renamed into place."""
    import shutil

    tmp = os.path.join(model_dir, f".tmp-{dst}")
    shutil.copytree(os.path.join(model_dir, str(src)), tmp)
    os.rename(tmp, os.path.join(model_dir, str(dst)))


def test_hot_reload_under_load_fails_no_request(exported, request_features, tmp_path):
    import shutil

    model_dir = str(tmp_path / "urm")
    os.makedirs(model_dir)
    shutil.copytree(os.path.join(exported, "1"), os.path.join(model_dir, "1"))
    inputs, _ = request_features
    versions, started_at, failures = [], [], []
    stop = threading.Event()
    with server.Server([servables.model_config("urm", model_dir)], port=0, host="127.0.0.1",
                       poll_seconds=0.1, max_num_load_retries=1, load_retry_interval=0.1) as srv:

        def hammer():
            with client.Client(srv.target, "urm", timeout=30) as c:
                while not stop.is_set():
                    try:
                        started = time.monotonic()
                        out = c.predict(inputs)
                        assert out["p_click"].shape == (16,)
                        versions.append(c.last_version)
                        started_at.append((started, c.last_version))
                    except Exception as e:  # noqa: BLE001 - counted, asserted below
                        failures.append(repr(e))

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            _wait(lambda: len(versions) >= 8)
            _copy_version(model_dir, 1, 2)
            _wait(lambda: srv.manager.loaded_versions("urm") == [2])
            unloaded = time.monotonic()  # version 1 is gone from the manager by now
            seen = len(versions)
            # A broken version is refused and logged; the good one keeps serving.
            os.makedirs(os.path.join(model_dir, "3"))
            with open(os.path.join(model_dir, "3", "saved_model.pb"), "wb") as f:
                f.write(b"not a SavedModel")
            _wait(lambda: getattr(srv.manager.status("urm").get(3), "state", "") == "END")
            _wait(lambda: len(versions) >= seen + 8)
        finally:
            stop.set()
            for t in threads:
                t.join()
        states = srv.manager.status("urm")
    assert failures == []
    assert versions[0] == 1 and set(versions) == {1, 2}
    # Requests in flight at the swap finish on version 1; every request that starts after it
    # is unloaded is answered by version 2.
    later = [v for t, v in started_at if t > unloaded]
    assert len(later) >= 8 and set(later) == {2}
    assert states[1].state == "END" and states[2].state == "AVAILABLE"
    assert states[3].state == "END" and states[3].error


def _wait(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)


def test_config_file_and_version_policies(tmp_path):
    configs = servables.read_model_config(os.path.join(REPO, "serving_config", "models.config"))
    assert [(c.name, c.base_path) for c in configs] == [("urm", "saved_models/urm")]
    versions = [1, 2, 5]
    assert servables.wanted_versions(configs[0].model_version_policy, versions) == [5]
    policy = type(configs[0].model_version_policy)()
    assert servables.wanted_versions(policy, versions) == [5]  # TF Serving's default
    policy.all.SetInParent()
    assert servables.wanted_versions(policy, versions) == [1, 2, 5]
    policy.specific.versions.extend([2, 7])
    assert servables.wanted_versions(policy, versions) == [2]
    policy.latest.num_versions = 2
    assert servables.wanted_versions(policy, versions) == [2, 5]
    os.makedirs(tmp_path / "m" / "3")  # no saved_model.pb: not a version yet
    os.makedirs(tmp_path / "m" / ".tmp-4")
    assert servables.available_versions(str(tmp_path / "m")) == []
    bad = tmp_path / "bad.config"
    bad.write_text("model_config_list { config { name: 'm' base_path: 'x' } } nonsense")
    with pytest.raises(ValueError, match="not a ModelServerConfig"):
        servables.read_model_config(str(bad))
    bad.write_text("model_config_list { config { name: 'm' base_path: 'x' "
                   "model_platform: 'pytorch' } }")
    with pytest.raises(ValueError, match="only 'tensorflow'"):
        servables.read_model_config(str(bad))
    with pytest.raises(FileNotFoundError):
        servables.read_model_config(str(tmp_path / "missing.config"))
    assert server.main(["--model_config_file", str(tmp_path / "missing.config")]) == 2


def test_server_process_serves_and_stops_on_sigterm(exported, request_features, tmp_path):
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "urm" base_path: "{exported}" '
                      'model_platform: "tensorflow" } }')
    # stderr into a file: TensorFlow's warnings would fill a pipe nobody reads until the end
    # and block the server's writes (and so its exit)
    err = open(tmp_path / "server.err", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ppm.serving.server", "--model_config_file", str(config),
         "--port", "0", "--host", "127.0.0.1", "--grace_seconds", "10"],
        stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO)
    try:
        line = ""
        while server.READY_LINE not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, open(err.name).read()
        port = int(re.search(r":(\d+) ", line).group(1))
        inputs, _ = request_features
        with client.Client(f"127.0.0.1:{port}", "urm", timeout=60) as c:
            assert c.predict(inputs)["p_click"].shape == (16,)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
            with pytest.raises(grpc.RpcError) as e:
                c.predict(inputs)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        log = open(err.name).read()
        # the process ends without interpreter teardown, after its logs are flushed
        assert "Received SIGTERM" in log and log.rstrip().endswith("Server stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
        err.close()


@pytest.mark.parametrize("value", [
    np.array([0.5, -1.25], np.float32), np.array([[1, 2**40], [3, -4]], np.int64),
    np.array([7, 8], np.int32), np.array(["a", "é", ""], object),
    np.array([[b"x", b"yz"]], object), np.zeros([0, 3], np.int64), np.array([1.5], np.float64)])
def test_tensor_protos_round_trip(value):
    from ppm.serving import tensors

    expected = np.vectorize(lambda v: v if isinstance(v, bytes) else v.encode(),
                            otypes=[object])(value) if value.dtype == object else value
    for packed in (False, True):
        proto = tensors.to_proto(value, packed=packed)
        # typed repeated fields, as TF Serving writes them, unless numbers are packed (a single
        # number stays typed: tf.make_tensor_proto does so)
        assert bool(proto.tensor_content) == (packed and value.dtype != object and value.size > 1)
        back = tf.make_ndarray(proto)
        assert back.shape == value.shape
        np.testing.assert_array_equal(back, expected)
