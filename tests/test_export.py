"""ppm.export: versioned, atomic SavedModels whose outputs equal the in-process model's."""

import os

import numpy as np
import pytest
import tensorflow as tf

import ppm  # noqa: F401
from ppm import checkpoints, evaluate, export
from tests.ranking_fixtures import one_batch, serving_names


@pytest.fixture(scope="module")
def urm_run(tiny_urm_run):
    return tiny_urm_run


def _inputs(batch, schema):
    return {k: batch[k] for k in serving_names(schema)}


def test_export_round_trip_versions_and_warmup(urm_run, tiny_examples, tmp_path):
    base = str(tmp_path / "saved_models")
    first = export.export(urm_run, "urm", base)
    second = export.export(urm_run, "urm", base)
    assert [os.path.basename(first), os.path.basename(second)] == ["1", "2"]
    assert sorted(os.listdir(os.path.join(base, "urm"))) == ["1", "2"]  # no temporary left
    with pytest.raises(FileExistsError):
        export.export(urm_run, "urm", base, version=2)
    assert export.read_info(first)["checkpoint"] == checkpoints.latest(urm_run)
    assert export.latest_export(urm_run, os.path.join(base, "urm")) == second
    assert export.latest_export(urm_run, os.path.join(base, "other")) is None

    model, inputs, _ = evaluate.load_model(urm_run)
    (feats, _), schema = one_batch(tiny_examples, 16, "test")
    expected = model.probabilities(feats)
    serve = tf.saved_model.load(first).signatures[export.SIGNATURE]
    got = serve(**_inputs(feats, schema))
    assert sorted(got) == ["p_cart", "p_click", "p_order"]
    for task in ("click", "order", "cart"):
        np.testing.assert_allclose(got[f"p_{task}"].numpy(), expected[task].numpy(),
                                   rtol=1e-5, atol=1e-6)
    # Histories of another length are padded / cut inside; unknown ids are not an error.
    short = _inputs(feats, schema)
    for k in [k for k in short if schema[k].sequence]:
        short[k] = short[k][:, :3]
    trimmed = dict(feats)
    trimmed["hist_len"] = tf.minimum(feats["hist_len"], 3)
    for k in [k for k in trimmed if k in short and schema[k].sequence]:
        pad = schema[k].default
        trimmed[k] = tf.concat([feats[k][:, :3], tf.fill(
            [16, schema.max_history - 3], tf.constant(pad, feats[k].dtype))], axis=1)
    short["hist_len"] = trimmed["hist_len"]
    np.testing.assert_allclose(serve(**short)["p_click"].numpy(),
                               model.probabilities(trimmed)["click"].numpy(), rtol=1e-5,
                               atol=1e-6)
    unknown = _inputs(feats, schema)
    unknown["item_id"] = tf.fill([16], "never-seen-item")
    assert np.isfinite(serve(**unknown)["p_click"].numpy()).all()

    from tensorflow_serving.apis import prediction_log_pb2

    records = list(tf.data.TFRecordDataset(
        os.path.join(first, "assets.extra", export.WARMUP_FILE)).as_numpy_iterator())
    assert records
    listwise = tf.saved_model.load(first).signatures[export.LISTWISE_SIGNATURE]
    kinds = []
    for raw in records:
        log = prediction_log_pb2.PredictionLog.FromString(raw)
        request = log.predict_log.request
        assert request.model_spec.name == "urm"
        args = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        kinds.append(request.model_spec.signature_name)
        if request.model_spec.signature_name == export.LISTWISE_SIGNATURE:
            assert set(args) == set(serving_names(schema)) | {export.CANDIDATE_MASK}
            out = listwise(**args)
            assert out["p_click"].shape == args[export.CANDIDATE_MASK].shape
            continue
        assert set(args) == set(serving_names(schema))
        out = serve(**args)
        assert out["p_click"].shape == (1,)
    # the warm-up covers both signatures
    assert set(kinds) == {export.SIGNATURE, export.LISTWISE_SIGNATURE}


def test_cli_and_bad_arguments(urm_run, tmp_path, capsys):
    base = str(tmp_path / "sm")
    assert export.main(["--run", urm_run, "--name", "m", "--base_dir", base,
                        "--version", "7"]) == 0
    assert capsys.readouterr().out.strip().endswith(os.path.join("m", "7"))
    assert export.next_version(os.path.join(base, "m")) == 8
    with pytest.raises(SystemExit):
        export.main(["--run", urm_run, "--name", "m", "--version", "0"])
    with pytest.raises(FileNotFoundError):
        export.export(str(tmp_path / "not-a-run"), "m", base)
