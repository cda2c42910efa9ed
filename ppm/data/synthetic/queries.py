"""Search logs of the synthetic world (Taobao §3.2, §6.1.1; PPM §3.1.1 query matching).

- Text queries: words of a clicked item (category noun or a synonym, plus one or two of colour,
  material, brand and style), in shuffled order, with occasional typos, paired with the item.
- Image queries: a user's photo of a purchased item (crop, colour jitter, noise of its picture),
  paired with that item.

Both carry a hard negative: another item of the same category. Queries are drawn from events
before the test window only, so encoders fine-tuned on them never see test behaviour.
"""

from __future__ import annotations

import numpy as np

from ppm.data.synthetic import images, words
from ppm.data.synthetic.world import World, colour_words, item_picture_attrs

P_SYNONYM = 0.4
P_TYPO = 0.1


def _typo(word: str, rng) -> str:
    if len(word) < 4:
        return word
    i = int(rng.integers(1, len(word) - 2))
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def text_query(world: World, item: int, colour: str, rng) -> str:
    it = world.items
    noun, synonyms = world.category_names[it["category"][item]]
    head = synonyms[rng.integers(len(synonyms))] if rng.random() < P_SYNONYM else noun
    extras = [colour, words.MATERIALS[it["material"][item]],
              world.brand_names[it["brand"][item]].lower(),
              words.STYLES[it["styles"][item][0]]]
    k = int(rng.integers(1, 3))
    chosen = [extras[j] for j in rng.choice(len(extras), size=k, replace=False)]
    terms = chosen + [head] if rng.random() < 0.7 else [head] + chosen
    if rng.random() < P_TYPO:
        j = int(rng.integers(len(terms)))
        terms[j] = _typo(terms[j], rng)
    return " ".join(terms)


def hard_negatives(world: World, items: np.ndarray, rng) -> np.ndarray:
    """Another item of the same category for each of ``items`` (-1 if the category has one)."""
    cat = world.items["category"]
    order = np.argsort(cat, kind="stable")
    start = np.searchsorted(cat[order], np.arange(world.scale.n_categories))
    end = np.searchsorted(cat[order], np.arange(world.scale.n_categories), side="right")
    c = cat[items]
    size = end[c] - start[c]
    # Draw a slot among the first size - 1; if it is the item itself, take the last slot
    # (never drawn otherwise): uniform over the other members.
    offset = (rng.random(len(items)) * np.maximum(size - 1, 1)).astype(np.int64)
    neg = order[start[c] + offset]
    neg = np.where(neg == items, order[end[c] - 1], neg)
    return np.where((size > 1) & (neg != items), neg, -1)


def make_queries(world: World, events: dict, rng) -> dict:
    """Returns columns of queries.parquet as item indices and raw values."""
    before_test = events["ts"] < world.windows["test"][0]
    clicked = np.flatnonzero(before_test & (events["click"] == 1))
    ordered = np.flatnonzero(before_test & (events["order"] == 1))
    n_text = min(world.scale.text_queries, len(clicked))
    n_image = min(world.scale.image_queries, len(ordered))
    text_items = events["item"][rng.choice(clicked, n_text, replace=False)]
    image_items = events["item"][rng.choice(ordered, n_image, replace=False)]
    colours = colour_words(world)
    text = [text_query(world, i, colours[i], rng) for i in text_items]
    photos = []
    for s in range(0, n_image, 256):
        idx = image_items[s:s + 256]
        photos += images.encode_png(images.perturb(images.draw(item_picture_attrs(world, idx)),
                                                   rng))
    items = np.concatenate([text_items, image_items]).astype(np.int64)
    return {
        "query": text + [""] * n_image,
        "item": items,
        "kind": ["text"] * n_text + ["image"] * n_image,
        "query_image": [None] * n_text + photos,
        "hard_negative": hard_negatives(world, items, rng),
    }
