"""The embedding cache loader on damaged shards: every error names the shard file."""

import os

import pytest

from ppm.data import cache
from tests.data.test_cache import write_cache

IDS = [f"item{k}" for k in range(40)]


def _shard(path, s=1, shards=3):
    return os.path.join(path, f"part-{s:05d}-of-{shards:05d}.tfrecord")


def _damage(file, how):
    with open(file, "rb") as f:
        data = f.read()
    if how == "truncated":  # cut inside a record, as an interrupted copy leaves it
        data = data[:len(data) // 2 + 3]
    elif how == "corrupted":  # a flipped byte inside a record's payload: its CRC fails
        mid = len(data) // 2
        data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]
    else:  # "garbage": not TFRecord at all
        data = b"this is not a tfrecord file" * 10
    with open(file, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("how", ["truncated", "corrupted", "garbage"])
def test_damaged_shard_is_named(tmp_path, how):
    path = write_cache(tmp_path / "c", IDS, shards=3)
    bad = _shard(path)
    _damage(bad, how)
    with pytest.raises(cache.CacheReadError) as info:
        cache.load_cache(path)
    message = str(info.value)
    assert message.startswith(bad + ": ")
    assert "truncated or corrupted" in message and "embed_items" in message
    for s in (0, 2):  # the good shards are not blamed
        assert _shard(path, s) not in message
    # Callers that catch the loader's errors (CacheMismatchError, ValueError) still do.
    assert isinstance(info.value, cache.CacheMismatchError)
    assert isinstance(info.value, ValueError)


def test_record_of_another_dimension_names_its_shard(tmp_path):
    path = write_cache(tmp_path / "c", IDS, shards=3)
    other = write_cache(tmp_path / "other", IDS[:6], shards=3, record_dim=3)
    os.replace(_shard(other, 2), _shard(path, 2))  # a shard from another cache
    with pytest.raises(cache.CacheMismatchError, match="manifest's dim 4") as info:
        cache.load_cache(path)
    assert str(info.value).startswith(_shard(path, 2) + ": ")
    assert not isinstance(info.value, cache.CacheReadError)


def test_intact_cache_still_loads(tmp_path):
    path = write_cache(tmp_path / "c", IDS, shards=3)
    assert sorted(cache.load_cache(path).ids.tolist()) == sorted(IDS)
