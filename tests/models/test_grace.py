"""GRACE (SIGIR 2024, arXiv:2405.05606): its layers by hand, and the model end to end on the
search world: examples with queries, the item graph and its embeddings, training under
MirroredStrategy (2 logical CPUs) with the rank-consistency tasks and the alignment loss,
export and gRPC serving."""

import os

import numpy as np
import pytest
import tensorflow as tf

import ppm  # noqa: F401
from beam_jobs import build_examples, item_graph
from ppm import configs, evaluate, export, features, losses, train
from ppm.data import synthetic
from ppm.graph import load_embeddings, pretrain
from ppm.layers.hash_embedding import hash_buckets
from ppm.models import grace, load_inputs
from ppm.serving import client, requests, servables, server
from tests.ranking_fixtures import one_batch

VOCAB = {"shop_id": ["s1", "s2"], "brand_id": ["b1"], "category_id": ["c1", "c2"],
         "item_id": ["i1", "i2", "i3"]}


def _item_feats(ids, shop="s1", brand="b1", category="c1"):
    n = len(ids)
    return {"item_id": tf.constant(ids), "shop_id": tf.constant([shop] * n),
            "brand_id": tf.constant([brand] * n), "category_id": tf.constant([category] * n)}


def test_the_query_is_the_mean_of_its_hashed_lower_cased_words():
    layer = grace.QueryEmbedding(50, 4, init_stddev=1.0)
    out = layer(tf.constant(["Red Silk dress", "", "dress"])).numpy()
    table = layer.embedding.embeddings.numpy()
    rows = tf.strings.to_hash_bucket_fast(["red", "silk", "dress"], 50).numpy()
    np.testing.assert_allclose(out[0], table[rows].mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(out[1], np.zeros(4))  # an empty query: no words
    np.testing.assert_allclose(out[2], table[rows[2]], rtol=1e-6)


def test_the_pretrained_table_knows_its_items_and_gives_zeros_elsewhere():
    table = grace.PretrainedItemTable(["i1", "i2"], 2, embeddings=[[1, 2], [3, 4]])
    vectors, has = table(tf.constant([["i2", "x"], ["", "i1"]]))
    np.testing.assert_array_equal(vectors.numpy(), [[[3, 4], [0, 0]], [[0, 0], [1, 2]]])
    np.testing.assert_array_equal(has.numpy(), [[True, False], [False, True]])
    with pytest.raises(ValueError, match="expected"):
        grace.PretrainedItemTable(["i1"], 3, embeddings=[[1, 2]])


def test_item_representations_hash_ids_share_rows_only_on_collision():
    buckets = 4
    ids = [f"i{k}" for k in range(40)]
    rows = hash_buckets(ids, buckets)
    same = [i for i, r in zip(ids, rows) if r == rows[0]][:2]
    other = next(i for i, r in zip(ids, rows) if r != rows[0])
    gen = grace.GraceItemEmbedding("generalized", VOCAB, 3, hash_buckets=buckets,
                                   init_stddev=1.0)
    out = gen(_item_feats([same[0], same[1], other])).numpy()
    assert gen.width == out.shape[-1] == 4 * 3
    np.testing.assert_array_equal(out[0], out[1])  # a collision: the same hash row, attributes
    assert not np.array_equal(out[0], out[2])
    np.testing.assert_array_equal(out[0, 3:], out[2, 3:])  # same shop, brand, category
    attrs = grace.GraceItemEmbedding("attributes", VOCAB, 3, init_stddev=1.0)
    out = attrs(_item_feats(["i1", "i2"])).numpy()
    assert attrs.width == out.shape[-1] == 9
    np.testing.assert_array_equal(out[0], out[1])  # w/o hash id: items of one shop, brand and
    # category cannot be told apart (§3.3.1)
    table = grace.PretrainedItemTable(["i1"], 2, embeddings=[[5.0, 6.0]])
    pre = grace.GraceItemEmbedding("pretrained", VOCAB, 3, pretrained=table, init_stddev=1.0)
    out = pre(_item_feats(["i1", "i9"])).numpy()
    assert pre.width == out.shape[-1] == 2 + 9
    np.testing.assert_array_equal(out[:, :2], [[5, 6], [0, 0]])
    with pytest.raises(ValueError, match="one of"):
        grace.GraceItemEmbedding("hashed", VOCAB, 3)


@pytest.mark.parametrize("negatives", ["pretrained", "items"])
def test_the_alignment_loss_reads_only_the_items_with_a_pretrained_embedding(negatives):
    table = grace.PretrainedItemTable(["a", "b"], 2, embeddings=[[1.0, 0.0], [0.0, 1.0]])
    backbone = grace.GraceBackbone(table, alignment_weight=0.5, temperature=0.2,
                                   negatives=negatives, init_stddev=1.0)
    target = tf.constant([[0.3, -1.0, 2.0], [1.0, 0.5, -0.2], [-0.7, 0.1, 0.4]])
    fields = {"target": target, "history": tf.zeros([3, 3]), "raw": {
        "item_id": tf.constant(["a", "c", "b"])}}
    backbone(fields)  # builds phi
    with tf.GradientTape() as tape:
        tape.watch(target)
        loss = backbone.alignment_loss(dict(fields, target=target))
    phi = backbone.phi(target)
    psi = tf.constant([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    per_row = losses.alignment_info_nce(phi, psi, tf.constant([True, False, True]), 0.2,
                                        negatives=negatives)
    np.testing.assert_allclose(loss.numpy(), per_row.numpy().sum() / 3, rtol=1e-6)
    grad = tape.gradient(loss, target).numpy()
    assert np.abs(grad[[0, 2]]).sum() > 0
    if negatives == "pretrained":  # c has no pre-trained embedding: the loss ignores it
        np.testing.assert_array_equal(grad[1], 0.0)
    else:  # Eq. 10 as printed: every item of the batch is in the denominator
        assert np.abs(grad[1]).sum() > 0
    # In training the weighted loss joins the layer's losses; at inference it does not.
    backbone(fields, training=True)
    np.testing.assert_allclose(backbone.losses[-1].numpy(), 0.5 * loss.numpy(), rtol=1e-6)
    backbone(fields, training=False)
    assert not backbone.losses


def test_grace_needs_graph_embeddings_for_alignment_and_the_pretrained_id():
    c = configs.get_config("grace", "tiny")
    with pytest.raises(ValueError, match="graph_embeddings is not set"):
        c.model.validate()
    c = configs.get_config("grace_ple", "tiny")
    c.model.validate()  # no alignment, the id vocabulary: no graph needed
    paper = configs.get_config("grace", "paper")
    assert paper.data.global_batch_size == 1024
    assert paper.trainer.optimizer.optimizer.type == "adagrad"
    assert paper.trainer.optimizer.learning_rate.constant.learning_rate == 0.05
    assert paper.model.tasks == ["click", "order", "top10", "top30", "top50", "top100"]
    assert paper.model.task_weights == [1.0, 1.0, 0.1, 0.1, 0.1, 0.1]
    assert paper.model.grace.alignment_weight == 0.1
    assert paper.model.head.type == "ple"


# --- end to end on the search world ---------------------------------------------------------

@pytest.fixture(scope="module")
def search_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("grace")
    world, examples = str(root / "world"), str(root / "examples")
    graph, emb = str(root / "graph"), str(root / "graph_embeddings")
    synthetic.generate(world, "tiny", 5, scenario="search", with_queries=False)
    stats = build_examples.run(["--dataset", world, "--out", examples, "--num_shards", "2",
                                "--max_history", "8"])
    item_graph.run(["--dataset", world, "--out", graph])
    pretrain.pretrain(graph, emb, dim=8, epochs=3, min_degree=1, progress=False)
    return world, (examples, stats), emb


def test_search_examples_carry_the_query_exposure_and_ranker_score(search_data):
    _, (examples, stats), _ = search_data
    schema = features.FeatureSchema.load(os.path.join(examples, features.SCHEMA_FILE))
    assert schema.search and schema[features.QUERY].role == features.CONTEXT
    assert features.QUERY in export.input_signature(schema)
    w = stats["windows"]["train_large"]
    assert w["exposure"]["displayed"] + w["exposure"]["recalled"] == w["ranked"] > 0
    assert w["exposure"]["sampled"] == w["examples"] - w["ranked"] > 0
    (feats, labels), _ = one_batch((examples, stats), 256)
    exposure = feats["exposure"].numpy().astype(str)
    score = feats[features.RANKER_SCORE].numpy()
    assert (score[exposure == "sampled"] == -1).all()
    assert ((score[exposure != "sampled"] > 0) & (score[exposure != "sampled"] < 1)).all()
    assert (labels["click"].numpy()[exposure != "displayed"] == 0).all()
    assert all(q for q in feats[features.QUERY].numpy())
    distill = features.derived_labels(["ranker_score"], feats, labels)["ranker_score"].numpy()
    np.testing.assert_allclose(distill, np.maximum(score, 0))


def _config(experiment, search_data, **override):
    world, (examples, _), emb = search_data
    c = configs.resolve(experiment, "tiny", validate=False)
    c.override({"data": {"dataset": world, "examples": examples, "embeddings": ""},
                "model": {"grace": {"graph_embeddings": emb}, "init_stddev": 0.3},
                "trainer": {"train_steps": 2, "checkpoint_interval": 2}})
    if override:
        c.override(override)
    return c


def test_grace_trains_exports_and_is_served(search_data, tmp_path):
    world, (examples, stats), emb = search_data
    runs = {}
    for name in ("grace", "grace_distillation", "grace_pretrained_id"):
        run = str(tmp_path / name)
        summary = train.train(_config(name, search_data), run, verbose=0)
        assert summary["replicas"] == 2 and np.isfinite(summary["final"]["loss"]), name
        runs[name] = (run, export.export(run, name, str(tmp_path / "saved_models")))
    model, inputs, _ = evaluate.load_model(runs["grace"][0])
    assert model.task_names == ["click", "order", "top10", "top30", "top50", "top100"]
    # The alignment loss is part of the training loss only.
    (feats, labels), _ = one_batch((examples, stats), 64)
    model(feats, training=True)
    assert len(model.losses) == 1 and float(model.losses[0]) > 0
    # psi is the graph table, fixed (built at its first training call; serving never reads it)
    _, matrix = load_embeddings(emb)
    np.testing.assert_allclose(model.backbone.pretrained.table.numpy()[1:], matrix)
    model(feats, training=False)
    assert not model.losses
    result = evaluate.evaluate_run(runs["grace"][0], "test", progress=False)
    assert result["position_baseline"]["tasks"] is None  # a search log's position is its rank
    assert result["tasks"]["top10"]["positives"] > 0
    (feats, _), _ = one_batch((examples, stats), 8, "test")
    protos = [servables.model_config(n, os.path.dirname(v)) for n, (_, v) in runs.items()]
    with server.Server(protos, port=0, host="127.0.0.1", poll_seconds=0) as srv:
        for name, (run, _) in runs.items():
            model, inputs, _ = evaluate.load_model(run)
            expected = model.probabilities(feats)
            wanted = export.input_signature(export.serving_schema(model, inputs.schema))
            assert features.QUERY in wanted and "position" in wanted
            with client.Client(srv.target, name, timeout=60) as c:
                got = c.predict({k: feats[k].numpy() for k in wanted})
            assert sorted(got) == sorted(f"p_{t}" for t in model.task_names), name
            for t in model.task_names:
                np.testing.assert_allclose(got[f"p_{t}"], expected[t].numpy(), rtol=1e-5,
                                           atol=1e-6, err_msg=f"{name} {t}")
        # A ranking request: the query is the request's, given once with the user.
        request = requests.sample_ranking_request(examples, os.path.join(world, "items.parquet"),
                                                  num_candidates=20, history=8)
        assert request["user"][features.QUERY]
        with client.Client(srv.target, "grace", timeout=60) as c:
            ranked = c.rank(request)
        assert len(ranked["p_top10"]) == 20


def test_the_inputs_of_grace_are_those_of_the_search_examples(search_data):
    c = _config("grace_wo_hash_id", search_data)
    inputs = load_inputs(c)
    model, _ = train.build(c, inputs)
    assert model.fields.query is not None
    assert model.fields.items.representation == "attributes" and model.fields.items.item is None
