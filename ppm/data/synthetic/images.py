"""Procedural product pictures drawn from the items' latent attributes.

Each picture (RGB, ``size`` x ``size``) shows one object whose shape and background tint follow
the category, colour follows the item's hue and saturation (the same latent directions that
give the title its colour word), texture follows the material, scale follows the size, plus
item-specific placement and pixel noise. So an image encoder can learn category, colour and
material from pixels (PPM §3.1.1 entity prediction; Taobao §3 image queries).

Everything is vectorised over a batch of items with NumPy; only PNG encoding is per item.
"""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image

N_SHAPES = 9
N_TEXTURES = 10  # one per material (words.MATERIALS)
_NOISE_BANK = 16


def hsv_to_rgb(h, s, v):
    """Vectorised HSV (h in degrees, s and v in [0, 1]) to RGB in [0, 1], shape [..., 3]."""
    h = (np.asarray(h, np.float32) % 360.0) / 60.0
    s = np.asarray(s, np.float32)
    v = np.asarray(v, np.float32)
    c = v * s
    x = c * (1 - np.abs(h % 2 - 1))
    m = v - c
    zeros = np.zeros_like(c)
    sector = np.floor(h).astype(int) % 6
    table = [(c, x, zeros), (x, c, zeros), (zeros, c, x), (zeros, x, c), (x, zeros, c),
             (c, zeros, x)]
    rgb = np.zeros(h.shape + (3,), np.float32)
    for k, (r, g, b) in enumerate(table):
        sel = sector == k
        rgb[sel] = np.stack([r[sel], g[sel], b[sel]], -1)
    return rgb + m[..., None]


# Object shapes in normalised coordinates (u, w), radius r and angle t; one per category.
_SHAPES = (
    lambda u, w, r, t: r < 1.0,                                                 # disc
    lambda u, w, r, t: np.maximum(np.abs(u), np.abs(w)) < 0.8,                  # square
    lambda u, w, r, t: np.abs(u) + np.abs(w) < 1.0,                             # diamond
    lambda u, w, r, t: (w < 0.7) & (np.abs(u) < (w + 1.0) * 0.55),             # triangle
    lambda u, w, r, t: (r < 1.0) & (r > 0.55),                                  # ring
    lambda u, w, r, t: ((np.abs(u) < 0.3) | (np.abs(w) < 0.3))                  # cross
    & (np.maximum(np.abs(u), np.abs(w)) < 1.0),
    lambda u, w, r, t: r < 0.55 + 0.4 * np.cos(5 * t),                          # star
    lambda u, w, r, t: np.maximum(np.abs(u) * 0.866 + np.abs(w) * 0.5, np.abs(w)) < 0.9,
    lambda u, w, r, t: u * u + w * w / 0.35 < 1.0,                              # ellipse
)
# Textures over pixel coordinates (x, y) with per-item frequency f; one per material.
_TEXTURES = (
    lambda x, y, f: 0.5 + 0.5 * np.sign(np.sin(f * x)),                         # cotton
    lambda x, y, f: 0.6 + 0.4 * np.sin(0.5 * f * (x + y)) ** 8,                 # leather
    lambda x, y, f: y / y.max() + 0 * f,                                        # steel
    lambda x, y, f: 0.5 + 0.5 * np.sin(f * x + 3 * np.sin(0.3 * y)),            # wooden
    lambda x, y, f: np.ones_like(x) + 0 * f,                                    # plastic
    lambda x, y, f: (np.sin(f * x) * np.sin(f * y) > 0.3).astype(np.float32),   # ceramic
    lambda x, y, f: 0.5 + 0.5 * np.sign(np.sin(f * x) * np.sin(f * y)),         # wool
    lambda x, y, f: 0.7 + 0.3 * np.cos(0.7 * f * np.sqrt(x * x + y * y)),       # glass
    lambda x, y, f: 0.5 + 0.5 * np.sin(f * (x - y)),                            # silk
    lambda x, y, f: 0.5 + 0.5 * np.sign(np.sin(f * y)),                         # bamboo
)
assert len(_SHAPES) == N_SHAPES and len(_TEXTURES) == N_TEXTURES


def _shape_masks(u, w, shape):
    """Boolean object masks [B, H, W] for shape ids ``shape`` [B] in normalised coords."""
    out = np.zeros(u.shape, bool)
    for k, fn in enumerate(_SHAPES):
        sel = shape == k
        if sel.any():
            us, ws = u[sel], w[sel]
            out[sel] = fn(us, ws, np.sqrt(us * us + ws * ws), np.arctan2(ws, us))
    return out


def _textures(x, y, material, freq):
    """Texture intensity in [0, 1], [B, H, W], one pattern per material id.

    ``x`` and ``y`` are pixel coordinates [1, H, W]; ``freq`` is [B].
    """
    out = np.zeros((material.shape[0],) + x.shape[1:], np.float32)
    for k, fn in enumerate(_TEXTURES):
        sel = material == k
        if sel.any():
            out[sel] = fn(x, y, freq[sel][:, None, None])
    return out


def draw(attrs: dict, size: int = 64) -> np.ndarray:
    """Draws a batch of pictures.

    Args:
      attrs: arrays of length B: ``shape`` (int, < N_SHAPES), ``bg_hue`` (degrees), ``hue``
        (degrees), ``saturation`` ([0, 1]), ``material`` (int, < N_TEXTURES), ``scale``
        (object radius as a fraction of the half-size), ``cx``, ``cy`` (centre offsets in
        [-1, 1]), ``freq`` (texture frequency), ``noise_id`` (int).
      size: picture side in pixels.

    Returns:
      uint8 array [B, size, size, 3].
    """
    b = len(attrs["shape"])
    grid = (np.arange(size, dtype=np.float32) - (size - 1) / 2) / (size / 2)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    scale = np.asarray(attrs["scale"], np.float32)[:, None, None]
    u = (xx[None] - 0.25 * np.asarray(attrs["cx"], np.float32)[:, None, None]) / scale
    w = (yy[None] - 0.25 * np.asarray(attrs["cy"], np.float32)[:, None, None]) / scale
    mask = _shape_masks(u, w, np.asarray(attrs["shape"]))
    pix_y, pix_x = np.meshgrid(np.arange(size, dtype=np.float32),
                               np.arange(size, dtype=np.float32), indexing="ij")
    tex = _textures(pix_x[None], pix_y[None], np.asarray(attrs["material"]),
                    np.asarray(attrs["freq"], np.float32))
    fg = hsv_to_rgb(attrs["hue"], attrs["saturation"],
                    np.full(b, 0.9, np.float32))[:, None, None, :]
    fg = fg * (np.float32(0.55) + np.float32(0.45) * tex[..., None])
    bg = hsv_to_rgb(attrs["bg_hue"], np.full(b, 0.18, np.float32),
                    np.full(b, 0.97, np.float32))[:, None, None, :]
    img = np.where(mask[..., None], fg, bg)
    img += _noise_bank(size)[np.asarray(attrs["noise_id"]) % _NOISE_BANK]
    np.clip(img, 0, 1, out=img)
    img *= 255
    img += 0.5  # round when truncating to uint8
    return img.astype(np.uint8)


@functools.lru_cache(maxsize=4)
def _noise_bank(size: int) -> np.ndarray:
    """Fixed pixel-noise patterns (float32 [_NOISE_BANK, size, size, 3]), shared by items."""
    rng = np.random.default_rng(12345)
    return rng.normal(0, 0.035, (_NOISE_BANK, size, size, 3)).astype(np.float32)


def perturb(images: np.ndarray, rng) -> np.ndarray:
    """A user's photo of the product: random crop and resize, colour jitter, sensor noise.

    Args:
      images: uint8 [B, H, W, 3].
      rng: a NumPy Generator.

    Returns:
      uint8 [B, H, W, 3].
    """
    b, h, w, _ = images.shape
    out = np.empty_like(images)
    crop = rng.uniform(0.7, 0.95, b)
    for i in range(b):  # crop sizes differ per picture; resizing is PIL's job
        ch, cw = int(h * crop[i]), int(w * crop[i])
        y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        pic = Image.fromarray(images[i, y0:y0 + ch, x0:x0 + cw]).resize((w, h),
                                                                         Image.BILINEAR)
        out[i] = np.asarray(pic)
    x = out.astype(np.float32) / 255.0
    brightness = rng.uniform(-0.12, 0.12, (b, 1, 1, 1))
    contrast = rng.uniform(0.75, 1.25, (b, 1, 1, 1))
    tint = rng.uniform(-0.06, 0.06, (b, 1, 1, 3))
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    x = (x - mean) * contrast + mean + brightness + tint
    x = x + rng.normal(0, 0.04, x.shape)
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


def encode_png(images: np.ndarray) -> list[bytes]:
    """PNG-encodes uint8 [B, H, W, 3] pictures."""
    out = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG", compress_level=1)
        out.append(buf.getvalue())
    return out
