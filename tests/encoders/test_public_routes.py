"""The encoder route on datasets converted by the public adapters, from tiny raw fixtures.

MovieLens (titles and posters, no queries.parquet), MIND (titles only: no images, no queries)
and H&M (images and text queries only): every documented command either builds an encoder or
stops at once, before decoding an image, with a message that says what is missing and what to
run instead.
"""

import io
import json
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ppm.data import canonical
from ppm.data.public import hm, mind, movielens
from ppm.encoders import contract, data, evaluate, train
from tests.data.public import test_hm, test_mind
from tests.data.public.test_end_to_end import _write_random_100k

TINY = ["--verbose", "0", "--dim", "8", "--batch_size", "4", "--image_size", "32",
        "--sequence_length", "8"]


def _jpg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def movielens_dataset(tmp_path_factory):
    """MovieLens-100K in its published format with a JPEG poster for two movies in three."""
    root = tmp_path_factory.mktemp("movielens")
    src = _write_random_100k(root / "ml-100k", users=12, movies=24, days=8)
    posters = root / "posters"
    posters.mkdir()
    for m in range(1, 25):
        if m % 3:
            (posters / f"{m}.jpg").write_bytes(_jpg(m))
    out = str(root / "dataset")
    movielens.convert(src, out, str(posters))
    assert not os.path.exists(os.path.join(out, canonical.QUERIES_FILE))
    return out


@pytest.fixture(scope="module")
def mind_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("mind")
    src = test_mind.write_split(root / "MINDsmall_train", test_mind.BEHAVIORS, test_mind.NEWS)
    out = str(root / "dataset")
    mind.convert(src, out)
    assert not os.path.exists(os.path.join(out, canonical.QUERIES_FILE))
    return out


@pytest.fixture(scope="module")
def hm_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("hm")
    out = str(root / "dataset")
    hm.convert(test_hm.write_hm(root / "hm")[0], out, negatives_per_positive=test_hm.NEG)
    kinds = pd.read_parquet(os.path.join(out, canonical.QUERIES_FILE))["kind"]
    assert set(kinds) == {"text"}
    return out


@pytest.fixture
def no_decoding(monkeypatch):
    """Fails the test if an item or query image is decoded."""
    def refuse(_):
        raise AssertionError("an image was decoded before the task was checked")

    monkeypatch.setattr(data, "_decodable", refuse)


def _run(dataset, tmp_path, *argv):
    return train.run(train.parse_args(["--dataset", dataset, "--out", str(tmp_path / "enc"),
                                       *TINY, *argv]))


# --- tasks that need no queries ------------------------------------------------------------

def test_movielens_image_entity_prediction_without_queries(movielens_dataset, tmp_path):
    info = _run(movielens_dataset, tmp_path, "--modality", "image", "--task", "ep",
                "--steps", "2")
    fn, meta = contract.load(info["path"])
    assert meta["modality"] == "image" and meta["task"] == "ep" and meta["steps"] == 2
    assert set(meta["final_losses"]) == {"loss", "accuracy"}
    # Movies 1..24 but the multiples of 3 have a poster; 12 first genres among them.
    assert meta["entities"] == {"entities": 12, "images": 16}
    assert meta["pairs"] == {"rows": 0, "pairs": 0, "source": "no queries.parquet"}
    for report in (meta["eval_before"], meta["eval_after"]):
        assert report == {"status": "no held-out pairs", "queries": 0}
    assert fn([_jpg(0)]).numpy().shape == (1, 8)


def test_movielens_text_encoder_without_queries(movielens_dataset, tmp_path, no_decoding):
    """--steps 0 reads no queries (text ep trains without them: the MIND test below)."""
    info = _run(movielens_dataset, tmp_path, "--modality", "text", "--task", "qm",
                "--tiny_text", "--steps", "0")
    fn, meta = contract.load(info["path"])
    assert meta["modality"] == "text" and meta["steps"] == 0
    assert meta["eval_after"]["status"] == "no held-out pairs"
    assert fn(["Film 3 (1953)", ""]).numpy().shape == (2, 8)


def test_mind_text_entity_prediction_from_titles(mind_dataset, tmp_path, no_decoding):
    """MIND: titles only. The text tower learns the subcategory (entity) from the title."""
    info = _run(mind_dataset, tmp_path, "--modality", "text", "--task", "ep", "--tiny_text",
                "--steps", "3")
    meta = contract.read_info(info["path"])
    assert meta["task"] == "ep" and "loss" in meta["final_losses"]
    assert meta["entities"] == {"entities": 7, "titles": 7}  # N9: shown, not in news.tsv


def test_steps_zero_needs_no_queries_for_any_task(mind_dataset, tmp_path):
    info = _run(mind_dataset, tmp_path, "--modality", "text", "--task", "scl", "--tiny_text",
                "--steps", "0")
    assert info["eval_before"]["status"] == "no held-out pairs"


def test_image_encoder_for_a_dataset_without_images_says_so(mind_dataset, tmp_path, caplog):
    info = _run(mind_dataset, tmp_path, "--modality", "image", "--task", "ep", "--steps", "0")
    assert info["projection_init"] == "random"
    assert "no item has a decodable image" in caplog.text


def test_hm_image_entity_prediction_with_text_queries_only(hm_dataset, tmp_path):
    info = _run(hm_dataset, tmp_path, "--modality", "image", "--task", "ep", "--steps", "2")
    meta = contract.read_info(info["path"])
    assert meta["entities"] == {"entities": 4, "images": 4}
    assert meta["eval_after"]["status"] == "no held-out pairs"  # no image queries


def test_hm_text_query_matching_gets_its_pairs(hm_dataset, tmp_path, no_decoding):
    """The gate and the pairs of the documented H&M text command (training itself: test_tasks)."""
    args = train.parse_args(["--dataset", hm_dataset, "--out", str(tmp_path / "enc"), *TINY,
                             "--modality", "text", "--task", "qm", "--tiny_text"])
    rows, counts = train.check_inputs(args)
    items = data.read_items(hm_dataset, "text")
    pairs, counts = data.query_pairs(hm_dataset, "text", items, 0, rows, counts)
    assert counts["pairs"] == len(pairs) == 6  # the articles with a product name
    train_pairs, held_out = data.split(pairs, args.eval_fraction, args.seed)
    assert (len(train_pairs), len(held_out)) == (5, 1)


# --- tasks that need queries stop at once ------------------------------------------------

def test_query_tasks_without_queries_parquet_fail_fast(movielens_dataset, tmp_path,
                                                       no_decoding):
    with pytest.raises(data.DatasetError) as e:
        _run(movielens_dataset, tmp_path, "--modality", "image", "--task", "scl",
             "--steps", "2")
    message = str(e.value)
    assert os.path.join(movielens_dataset, "queries.parquet") in message
    assert "--task ep" in message and "--steps 0" in message


def test_image_scl_on_text_queries_only_fails_before_decoding(hm_dataset, tmp_path,
                                                              no_decoding):
    with pytest.raises(data.DatasetError) as e:
        _run(hm_dataset, tmp_path, "--modality", "image", "--task", "scl", "--steps", "2")
    message = str(e.value)
    assert "no usable image query pairs" in message
    assert "0 of its 6 rows are of kind 'image'" in message and "--task ep" in message


def test_image_ep_without_images_fails_before_decoding(mind_dataset, tmp_path, no_decoding):
    with pytest.raises(data.DatasetError, match="no item has an image"):
        _run(mind_dataset, tmp_path, "--modality", "image", "--task", "ep", "--steps", "2")


def test_ep_with_a_single_entity_names_the_count(hm_dataset, tmp_path):
    one = str(tmp_path / "one_entity")
    os.makedirs(one)
    for name in os.listdir(hm_dataset):
        if name != canonical.ITEMS_FILE:
            os.symlink(os.path.join(hm_dataset, name), os.path.join(one, name))
    items = pd.read_parquet(os.path.join(hm_dataset, canonical.ITEMS_FILE))
    items.assign(entity="Vest top").to_parquet(os.path.join(one, canonical.ITEMS_FILE))
    with pytest.raises(data.DatasetError, match="needs >= 2 entities, found 1"):
        _run(one, tmp_path, "--modality", "image", "--task", "ep", "--steps", "2")


def test_cli_exits_2_with_the_reason(movielens_dataset, tmp_path, caplog, capsys):
    rc = train.main(["--dataset", movielens_dataset, "--out", str(tmp_path / "enc"),
                     "--modality", "text", "--task", "qm", "--tiny_text", *TINY])
    assert rc == 2
    assert "queries.parquet" in caplog.text
    assert not os.path.exists(tmp_path / "enc")


def test_cli_prints_no_held_out_pairs(movielens_dataset, tmp_path, capsys):
    rc = train.main(["--dataset", movielens_dataset, "--out", str(tmp_path / "enc"),
                     "--modality", "text", "--task", "qm", "--tiny_text", "--steps", "0",
                     *TINY])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["eval_before"] == {"status": "no held-out pairs", "queries": 0}


# --- the Acc@N report ------------------------------------------------------------------------

def test_acc_at_n_says_when_it_has_no_held_out_pairs():
    empty = data.Pairs(*(np.array([], object) for _ in range(4)))
    assert evaluate.retrieval_accuracy(lambda s: None, empty) == {
        "status": "no held-out pairs", "queries": 0}
    assert evaluate.format_accuracy(evaluate.retrieval_accuracy(lambda s: None, empty)) == (
        "no held-out pairs")
    assert evaluate.format_accuracy({"acc@1": 0.25, "acc@5": 1.0, "queries": 4,
                                     "candidates": 3}) == (
        "Acc@1 0.250, Acc@5 1.000 (4 queries, 3 candidates)")


def test_a_single_pair_is_kept_for_training_not_held_out():
    one = data.Pairs(*(np.array(["x"], object) for _ in range(4)))
    train_pairs, held_out = data.split(one, 0.2, seed=0)
    assert len(train_pairs) == 1 and len(held_out) == 0
