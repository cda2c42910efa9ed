"""The counterfactual the embedding cache avoids: the encoders in the request path.

    python -m ppm.serving.uncached --run DIR --name urm_uncached --base_dir DIR \\
        --text_encoder DIR --image_encoder DIR --items items.parquet

Exports the same URM as :mod:`ppm.export`, with one change: instead of reading the cached
``[E_title | E_image]`` rows, every request looks up the titles and image bytes of its items
(tables inside the SavedModel) and runs the exported text and image encoders on them (each
distinct item of the request once). With the encoders that built the cache the scores are the
cached model's (a test checks it); only the latency differs. This is what the latency benchmark
(`benchmarks/serving_latency.py`) compares to the cached model, the saving PPM's design is for
(PPM §3.2.2). It is a measuring device, not a way to serve: the text encoder's WordPiece ops
come from ``tensorflow-text``, which a stock TF Serving binary does not contain.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys

import numpy as np
import pyarrow.parquet as pq
import tensorflow as tf

from ppm import export
from ppm.encoders import contract
from ppm.layers.embedding_cache import CachedItemEmbedding, rows_computed_by

logger = logging.getLogger(__name__)


class UncachedServingModule(export.ServingModule):
    """``serving_default`` like :class:`ppm.export.ServingModule`, encoders in the path."""

    def __init__(self, model, schema, text_encoder: str, image_encoder: str, items_path: str):
        import tensorflow_text  # noqa: F401 - WordPiece ops of the text encoder

        super().__init__(model, schema)
        text_info, image_info = contract.read_info(text_encoder), contract.read_info(image_encoder)
        dims = {layer.dim for layer in model.submodules if isinstance(layer, CachedItemEmbedding)}
        if not dims:
            raise ValueError("the model has no cached item embedding (a model without PPM)")
        mods = {tuple(layer.modalities) for layer in model.submodules
                if isinstance(layer, CachedItemEmbedding)}
        if mods != {("text", "image")}:
            raise ValueError(f"the model's embedding cache holds {sorted(mods)[0]} only: the "
                             "uncached variant runs both encoders and needs a model trained "
                             "on a cache of text and image")
        if dims != {text_info["dim"]} or dims != {image_info["dim"]}:
            raise ValueError(f"encoder dims {text_info['dim']}/{image_info['dim']} differ from "
                             f"the model's cache dim {sorted(dims)}")
        self.dim = dims.pop()
        self.text = tf.saved_model.load(text_encoder)
        self.image = tf.saved_model.load(image_encoder)
        table = pq.read_table(items_path, columns=["item_id", "title", "image"])
        ids = np.array(table.column("item_id").to_pylist(), object)
        titles = np.array([t or "" for t in table.column("title").to_pylist()], object)
        images = np.array([b or b"" for b in table.column("image").to_pylist()], object)
        self.titles = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(ids, titles), default_value="")
        self.images = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(ids, images), default_value="")

    def _encode(self, encoder, inputs, present):
        where = tf.where(present)[:, 0]
        n = tf.size(where)

        def run():
            return encoder.signatures[contract.SIGNATURE](
                **{contract.INPUT_KEY: tf.gather(inputs, where)})[contract.OUTPUT_KEY]

        out = tf.cond(n > 0, run, lambda: tf.zeros([0, self.dim]))
        return tf.scatter_nd(where[:, None], out, [tf.size(inputs), self.dim])

    def _rows(self, layer, ids):
        uniq, index = tf.unique(tf.reshape(ids, [-1]))
        titles, images = self.titles.lookup(uniq), self.images.lookup(uniq)
        has_title, has_image = titles != "", images != ""
        emb = tf.concat([self._encode(self.text, titles, has_title),
                         self._encode(self.image, images, has_image)], axis=1)
        flags = tf.cast(tf.stack([has_title, has_image], axis=1), tf.float32)
        shape = tf.shape(ids)
        return {"embedding": tf.reshape(tf.gather(emb, index), tf.concat([shape, [-1]], 0)),
                "flags": tf.reshape(tf.gather(flags, index), tf.concat([shape, [2]], 0))}


def export_uncached(run_dir: str, name: str, base_dir: str, text_encoder: str,
                    image_encoder: str, items_path: str, version: int | None = None) -> str:
    """Writes ``<base_dir>/<name>/<version>/`` (atomically, as :func:`ppm.export.export`)."""
    from ppm import evaluate  # noqa: PLC0415 - loads the model (Keras 2)

    model, inputs, _ = evaluate.load_model(run_dir)
    model_dir = os.path.join(base_dir, name)
    version = version or export.next_version(model_dir)
    final = os.path.join(model_dir, str(version))
    if tf.io.gfile.exists(final):
        raise FileExistsError(f"{final} exists")
    module = UncachedServingModule(model, export.serving_schema(model, inputs.schema),
                                   text_encoder, image_encoder, items_path)
    tmp = os.path.join(model_dir, f".tmp-{version}-{os.getpid()}")
    try:
        # Saving traces the signature again (in a save context): the encoders must be in the
        # path then.
        with rows_computed_by(module._rows):
            tf.saved_model.save(module, tmp, signatures={export.SIGNATURE: module.serve})
        tf.io.gfile.rename(tmp, final)
    finally:
        if tf.io.gfile.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ppm.serving.uncached", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="A URM run folder (with PPM).")
    parser.add_argument("--name", required=True)
    parser.add_argument("--base_dir", required=True)
    parser.add_argument("--text_encoder", required=True, help="Exported text encoder folder.")
    parser.add_argument("--image_encoder", required=True, help="Exported image encoder folder.")
    parser.add_argument("--items", required=True, help="The dataset's items.parquet.")
    parser.add_argument("--version", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(export_uncached(args.run, args.name, args.base_dir, args.text_encoder,
                          args.image_encoder, args.items, args.version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
