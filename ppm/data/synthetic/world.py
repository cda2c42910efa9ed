"""The latent semantic space of the synthetic world: categories, brands, shops, items, users.

Every item has a latent vector ``z = normalise(category centre + brand offset + own noise)``
(dimension ``LATENT_DIM``). Observable attributes are read off fixed directions of ``z``:

- hue and saturation from dimensions 0-2 (title colour word, picture colour),
- material from a fixed projection of ``z`` (title material word, picture texture),
- size from dimension 3 (title size word, object scale),
- style words from another fixed projection.

Users have latent interest vectors built from a few categories (skewed by gender), so the
user-item affinity ``cos(user, z)`` drives clicks (see ``behaviour.py``). A cold item's
content therefore predicts its click-through rate, while its ``quality`` (an item-specific
effect no content shows) is only learnable from its own logs: the reason ID features help warm
items and modal features help cold ones (PPM §4.5).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ppm.data.synthetic import images, words

LATENT_DIM = 16
DAY = 86400


@dataclasses.dataclass(frozen=True)
class Scale:
    """Size of a synthetic world.

    Attributes:
      n_categories, n_brands, n_shops, n_items, n_users: population sizes.
      requests_per_day: recommendation requests per simulated day.
      candidates: displayed candidates per request (display positions 0..candidates-1).
      pretrain_days: length of the pretrain window (the train windows are 14 and 7 days, as
        in PPM Table 1).
      text_queries, image_queries: search-log pairs to produce (at most).
      test_days: length of the test window (1 day, as in PPM Table 1; longer test windows
        hold more never-seen and rarely-seen items, for cold-start measurements).
      train_days: length of the ``train_large`` window (14 days, PPM Table 1; GRACE §3.1.1
        trains on 15); ``train_small`` is its last 7 days.
    """

    n_categories: int
    n_brands: int
    n_shops: int
    n_items: int
    n_users: int
    requests_per_day: int
    candidates: int
    pretrain_days: int
    text_queries: int
    image_queries: int
    test_days: int = 1
    train_days: int = 14


SCALES = {
    "tiny": Scale(8, 24, 12, 400, 150, 40, 8, 14, 300, 150),
    "demo": Scale(20, 100, 40, 4000, 3000, 600, 10, 28, 4000, 2000),
    "small": Scale(40, 400, 150, 20000, 20000, 1500, 10, 56, 20000, 10000),
    "large": Scale(100, 2000, 800, 200000, 200000, 8000, 10, 168, 100000, 50000),
    # the demo world with a 7-day test window: same training data sizes, 7x the test examples
    # (benchmarks/table3.py's cold buckets)
    "demo_week": Scale(20, 100, 40, 4000, 3000, 600, 10, 28, 4000, 2000, test_days=7),
}
TRAIN_SMALL_DAYS = 7
START_TS = 1704067200  # 2024-01-01 00:00:00 UTC
# Share of the catalogue that exists before the first window; the rest arrives over time.
INITIAL_CATALOGUE = 0.5
P_EMPTY_TITLE = 0.03
P_NO_IMAGE = 0.05

GENDERS = ("F", "M")
AGES = ("18-24", "25-34", "35-44", "45-54", "55+")
CITY_TIERS = ("1", "2", "3", "4")
POWER = ("low", "mid", "high")


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@dataclasses.dataclass
class World:
    """All latent and observable attributes; arrays are indexed by entity number."""

    scale: Scale
    seed: int
    category_names: list
    category_centres: np.ndarray   # [C, D]
    category_shape: np.ndarray     # [C]
    category_bg_hue: np.ndarray    # [C]
    category_gender_skew: np.ndarray  # [C], > 0 leans F
    brand_names: list
    brand_category: np.ndarray     # [B]
    shop_quality: np.ndarray       # [S]
    items: dict                    # arrays of length I
    users: dict                    # arrays of length U
    windows: dict                  # name -> (start, end)

    @property
    def end_ts(self) -> int:
        return self.windows["test"][1]


def make_windows(scale: Scale) -> dict:
    pre_end = START_TS + scale.pretrain_days * DAY
    train_end = pre_end + scale.train_days * DAY
    return {
        "pretrain": (START_TS, pre_end),
        "train_large": (pre_end, train_end),
        "train_small": (train_end - TRAIN_SMALL_DAYS * DAY, train_end),
        "test": (train_end, train_end + scale.test_days * DAY),
    }


def _material_projection(rng):
    return rng.normal(size=(LATENT_DIM, len(words.MATERIALS)))


def build_world(scale: Scale, seed: int) -> World:
    """Samples the latent world (no pictures yet; see :func:`item_picture_attrs`)."""
    rng_cat, rng_brand, rng_item, rng_user, rng_proj = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5))
    c, b, s, n, u = (scale.n_categories, scale.n_brands, scale.n_shops, scale.n_items,
                     scale.n_users)
    if b < c:
        raise ValueError(f"Need at least one brand per category: {b} brands, {c} categories")

    centres = _unit(rng_cat.normal(size=(c, LATENT_DIM)))
    cat_shape = np.arange(c) % images.N_SHAPES
    cat_bg_hue = rng_cat.uniform(0, 360, c)
    gender_skew = rng_cat.uniform(-1, 1, c)

    brand_cat = np.concatenate([np.arange(c), rng_brand.integers(0, c, b - c)])
    brand_offset = 0.5 * rng_brand.normal(size=(b, LATENT_DIM)) / np.sqrt(LATENT_DIM)
    brand_premium = rng_brand.normal(0, 0.4, b)
    brand_names = words.brand_names(b, rng_brand)
    shop_quality = rng_brand.normal(0, 0.3, s)
    # Each shop sells a few categories; an item's shop is one of those selling its category.
    shop_of_category = [rng_brand.choice(s, size=max(2, s * 3 // c), replace=True)
                        for _ in range(c)]

    world_windows = make_windows(scale)
    end_ts = world_windows["test"][1]

    item_brand = rng_item.integers(0, b, n)
    item_cat = brand_cat[item_brand]
    z = centres[item_cat] + brand_offset[item_brand] + (
        0.45 * rng_item.normal(size=(n, LATENT_DIM)) / np.sqrt(LATENT_DIM))
    z = _unit(z)
    item_shop = np.array([shop_of_category[k][rng_item.integers(len(shop_of_category[k]))]
                          for k in item_cat])
    n_old = int(INITIAL_CATALOGUE * n)
    created = np.concatenate([
        START_TS - rng_item.integers(1, 365 * DAY, n_old),
        rng_item.integers(START_TS, end_ts, n - n_old)])
    rng_item.shuffle(created)
    hue = (np.degrees(np.arctan2(z[:, 1], z[:, 0])) + 360) % 360
    saturation = np.clip(0.5 + 1.8 * z[:, 2], 0.0, 1.0)
    material = np.argmax(z @ _material_projection(rng_proj), axis=1)
    size_q = np.argsort(np.argsort(z[:, 3])) * len(words.SIZES) // n
    style_proj = rng_proj.normal(size=(LATENT_DIM, len(words.STYLES)))
    style_rank = np.argsort(-(z @ style_proj), axis=1)[:, :2]
    price = np.exp(3.0 + 0.6 * rng_cat.normal(size=c)[item_cat] + brand_premium[item_brand]
                   + 0.3 * rng_item.normal(size=n))
    items = {
        "category": item_cat, "brand": item_brand, "shop": item_shop, "z": z,
        "quality": rng_item.normal(0, 0.6, n) + shop_quality[item_shop],
        # Long-tailed exposure: how much the upstream retrieval pushes each item.
        "buzz": rng_item.lognormal(0.0, 1.4, n),
        "created_at": created.astype(np.int64),
        "hue": hue, "saturation": saturation, "material": material, "size": size_q,
        "styles": style_rank, "n_styles": rng_item.integers(0, 3, n),
        "model": rng_item.integers(100, 1000, n), "model_letter": rng_item.integers(0, 26, n),
        "price": np.round(price, 2),
        "empty_title": rng_item.random(n) < P_EMPTY_TITLE,
        "no_image": rng_item.random(n) < P_NO_IMAGE,
        "cx": rng_item.uniform(-1, 1, n), "cy": rng_item.uniform(-1, 1, n),
        "freq": rng_item.uniform(0.6, 1.4, n),
    }

    gender = rng_user.integers(0, 2, u)
    sign = np.where(gender == 0, 1.0, -1.0)
    cat_logits = 1.5 * gender_skew[None, :] * sign[:, None] + rng_user.gumbel(size=(u, c))
    n_interests = rng_user.integers(1, 4, u)
    top = np.argsort(-cat_logits, axis=1)[:, :3]
    weights = (np.arange(3)[None, :] < n_interests[:, None]) * rng_user.uniform(0.5, 1, (u, 3))
    uz = _unit(np.einsum("uk,ukd->ud", weights, centres[top])
               + 0.25 * rng_user.normal(size=(u, LATENT_DIM)) / np.sqrt(LATENT_DIM))
    power = np.clip(np.round(rng_user.normal(1, 0.7, u)), 0, 2).astype(int)
    users = {
        "z": uz, "bias": rng_user.normal(0, 0.3, u),
        "activity": rng_user.lognormal(0.0, 1.2, u),
        "cart_propensity": rng_user.normal(0, 0.5, u),
        "gender": gender, "age": rng_user.integers(0, len(AGES), u),
        "city_tier": rng_user.integers(0, len(CITY_TIERS), u), "power": power,
    }
    return World(scale=scale, seed=seed, category_names=words.category_names(c),
                 category_centres=centres, category_shape=cat_shape,
                 category_bg_hue=cat_bg_hue, category_gender_skew=gender_skew,
                 brand_names=brand_names, brand_category=brand_cat,
                 shop_quality=shop_quality, items=items, users=users, windows=world_windows)


# --- observable item attributes --------------------------------------------------------------

def colour_words(world: World) -> np.ndarray:
    it = world.items
    hues = np.array([h for _, h in words.COLOURS], float)
    dist = np.abs((it["hue"][:, None] - hues[None, :] + 180) % 360 - 180)
    names = np.array([w for w, _ in words.COLOURS] + list(words.NEUTRAL_COLOURS), object)
    idx = np.argmin(dist, axis=1)
    neutral = it["saturation"] < words.LOW_SATURATION
    # Neutral items: black, grey or white by the saturation itself.
    neutral_idx = len(words.COLOURS) + np.minimum(
        (it["saturation"] / words.LOW_SATURATION * 3).astype(int), 2)
    return names[np.where(neutral, neutral_idx, idx)]


def titles(world: World, rng) -> np.ndarray:
    """English titles: brand, styles, colour, material, noun, size and a model code."""
    it = world.items
    colour = colour_words(world)
    nouns = [name for name, _ in world.category_names]
    out = []
    for i in range(len(it["category"])):
        if it["empty_title"][i]:
            out.append("")
            continue
        styles = [words.STYLES[k] for k in it["styles"][i][:it["n_styles"][i]]]
        parts = styles + [colour[i], words.MATERIALS[it["material"][i]],
                          nouns[it["category"][i]]]
        size = words.SIZES[it["size"][i]]
        model = f"{chr(65 + it['model_letter'][i])}{it['model'][i]}"
        tail = [size, model] if rng.random() < 0.5 else [model, size]
        out.append(" ".join([world.brand_names[it["brand"][i]]] + parts + tail))
    return np.array(out, object)


def item_picture_attrs(world: World, idx: np.ndarray) -> dict:
    """Inputs of :func:`images.draw` for items ``idx``."""
    it = world.items
    cat = it["category"][idx]
    return {
        "shape": world.category_shape[cat], "bg_hue": world.category_bg_hue[cat],
        "hue": it["hue"][idx], "saturation": it["saturation"][idx],
        "material": it["material"][idx], "scale": 0.45 + 0.12 * it["size"][idx],
        "cx": it["cx"][idx], "cy": it["cy"][idx], "freq": it["freq"][idx],
        "noise_id": idx,
    }
