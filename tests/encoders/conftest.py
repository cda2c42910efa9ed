"""Tiny encoders built from the tiny world (no downloads)."""

import os

import pandas as pd
import pytest


@pytest.fixture(scope="session")
def tiny_items(tiny_world):
    return pd.read_parquet(os.path.join(tiny_world, "items.parquet"))


@pytest.fixture(scope="session")
def tiny_vocab(tiny_items):
    from ppm.encoders import text

    return text.learn_vocabulary(tiny_items["title"].tolist(), 500)


@pytest.fixture
def tiny_text(tiny_vocab):
    """(preprocessor, encoder) of a tiny random BERT, dim 16."""
    from ppm.encoders import text

    return text.tiny(tiny_vocab, dim=16, sequence_length=16, seed=1)


@pytest.fixture
def small_image():
    from ppm.encoders import image

    return image.small(dim=16, image_size=32, seed=1)
