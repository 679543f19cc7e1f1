"""The feature store: encoders, fitting only on training-era rows, gathers into reused buffers, the asset."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from stores.feature_encoding import encode_table, fit_table, hash_text
from stores.feature_store import (
    FeatureStoreError,
    NodeTable,
    build_feature_store,
    gather_rows,
    open_feature_store,
)

STYPES = {
    "price": {"stype": "numerical"},
    "visits": {"stype": "numerical"},
    "colour": {"stype": "categorical"},
    "seen": {"stype": "timestamp"},
    "tags": {"stype": "multicategorical", "separator": "|"},
    "note": {"stype": "text"},
    "flat": {"stype": "numerical"},
    "item_id": {"stype": "id"},
}


def frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_id": [1, 2, 3, 4, 5, 6],
            "price": [1.0, 2.0, None, 4.0, 5.0, 6.0],
            "visits": [1.0, 2.0, 1.0, 3.0, 2.0, 100_000.0],  # heavy tail -> log1p
            "colour": ["red", "red", "blue", "blue", None, "green"],  # green: seen once -> rare
            "seen": [int(dt.datetime(2024, m, 1, 12, tzinfo=dt.UTC).timestamp()) for m in (1, 2, 3, 4, 5, 6)],
            "tags": ["a|b", "b", None, "a|c", "c|b", "z"],
            "note": ["hello world", None, "formula one", "hello", "", "world hello"],
            "flat": [7.0] * 6,
        }
    )


def test_encoders_round_trip_and_handle_nulls_unseen_and_constants():
    data = frame()
    encodings = {e.column: e for e in fit_table(data, STYPES)}
    assert "item_id" not in encodings
    blocks = encode_table(data, list(encodings.values()))
    numerical, categorical = blocks["numerical"], blocks["categorical"]
    price = encodings["price"]
    scaled, missing = numerical[:, price.offset], numerical[:, price.offset + 1]
    restored = scaled * price.stats["std"] + price.stats["mean"]
    assert np.allclose(restored[[0, 1, 3, 4, 5]], [1, 2, 4, 5, 6], atol=1e-5)
    assert missing.tolist() == [0, 0, 1, 0, 0, 0] and scaled[2] == 0
    assert encodings["visits"].stats["log"] is True
    flat = encodings["flat"]
    assert flat.stats["std"] == 1.0 and np.all(numerical[:, flat.offset] == 0)
    codes = categorical[:, encodings["colour"].offset]
    vocabulary = encodings["colour"].stats["vocabulary"]
    assert set(vocabulary) == {"red", "blue"}  # green appears once: too rare
    assert codes[0] == codes[1] != codes[2] == codes[3] and min(codes[:4]) >= 2
    assert codes[4] == 0 and codes[5] == 1  # null and rare stay apart
    unseen = encode_table(data.with_columns(pl.lit("purple").alias("colour")), list(encodings.values()))
    assert np.all(unseen["categorical"][:, 0] == 1)
    tags = encodings["tags"]
    multi_hot = numerical[:, tags.offset : tags.offset + tags.width]
    assert multi_hot[0].sum() == 2 and multi_hot[2].sum() == 0 and tags.width <= 32
    seen = encodings["seen"]
    month_sin, month_cos = numerical[0, seen.offset + 1], numerical[0, seen.offset + 2]
    assert np.isclose(month_sin, 0.0, atol=1e-6) and np.isclose(month_cos, 1.0)  # January
    hour_sin = numerical[0, seen.offset + 5]
    assert np.isclose(hour_sin, np.sin(np.pi), atol=1e-6)  # 12:00 is half a day
    text = blocks["text"]
    assert np.allclose(np.linalg.norm(text[[0, 2, 3, 5]], axis=1), 1.0) and np.all(text[[1, 4]] == 0)
    assert np.allclose(text[0], text[5])  # same words, any order
    assert np.allclose(hash_text(["hello world"], 64), text[[0]])


def test_statistics_ignore_rows_after_the_cutoff():
    data = frame()
    fit_rows = np.array([True, True, True, True, False, False])
    before = {e.column: e.stats for e in fit_table(data, STYPES, fit_rows)}
    changed = data.with_columns(pl.Series("price", [1.0, 2.0, None, 4.0, 500.0, 600.0]))
    after = {e.column: e.stats for e in fit_table(changed, STYPES, fit_rows)}
    assert before == after
    assert before != {e.column: e.stats for e in fit_table(changed, STYPES)}


@pytest.fixture
def stored(tmp_path):
    rng = np.random.default_rng(0)
    data = pl.DataFrame({"x": rng.normal(size=1000), "c": rng.choice(["a", "b", "c"], 1000)})
    tables = {"items": NodeTable(data, {"x": {"stype": "numerical"}, "c": {"stype": "categorical"}})}
    path, _schema = build_feature_store(tmp_path, tables)
    return open_feature_store(tmp_path), path


def test_damaged_store_is_an_error(stored, tmp_path):
    _features, path = stored
    block = path / "items.numerical.npy"
    block.write_bytes(block.read_bytes()[:-64])
    with pytest.raises(FeatureStoreError, match="truncated or corrupt"):
        open_feature_store(tmp_path)
    with pytest.raises(FeatureStoreError, match="does not exist"):
        open_feature_store(tmp_path, "0123456789")


def test_text_columns_get_real_sentence_embeddings(tmp_path):
    from stores.text_embedding import sentence_embedder

    embed, width = sentence_embedder()
    vectors = embed(["formula one racing driver", "a driver in formula 1 races", "chocolate cake recipe"])
    assert vectors.shape == (3, width) == (3, 384) and vectors.dtype == np.float32
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2]) + 0.2
    data = pl.DataFrame({"note": ["formula one racing driver", None, "chocolate cake recipe"]})
    tables = {"items": NodeTable(data, {"note": {"stype": "text"}})}
    build_feature_store(tmp_path, tables, embed_text=embed, text_width=width)
    text = np.asarray(open_feature_store(tmp_path).blocks[("items", "text")])
    assert text.shape == (3, 384) and np.allclose(text[0], vectors[0], atol=1e-5) and not text[1].any()


@pytest.mark.parametrize("rows", [7, 5000])  # below and above the parallel-copy threshold
def test_gathers_equal_the_stored_rows(stored, rows):
    features, _ = stored
    block = features.blocks[("items", "numerical")]
    ids = np.random.default_rng(rows).integers(0, block.shape[0], rows)
    gathered = gather_rows(block, ids)
    assert gathered.dtype == block.dtype and np.array_equal(gathered, np.asarray(block)[ids])
    codes = gather_rows(features.blocks[("items", "categorical")], ids)
    assert codes.dtype == np.int32 and np.array_equal(
        codes, np.asarray(features.blocks[("items", "categorical")])[ids]
    )
