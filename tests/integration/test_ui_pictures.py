"""Pictures stored by assets and served by the UI's route: round trip, and nothing outside pictures/ served."""

from __future__ import annotations

import numpy as np
import pytest
from dagster import AssetKey

from kumo_assets.ui_pictures import PICTURES_ROUTE, picture_metadata, picture_parts
from kumo_assets.webserver import read_picture
from stores.data_plane import DataPlane
from training.pictures import label_histogram, model_pictures


def test_a_stored_picture_is_linked_inline_and_served(tmp_path):
    plane = DataPlane(root=str(tmp_path))
    key = AssetKey(["shop", "big_spender", "best_model"])
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    pictures = model_pictures("binary_classification", labels, np.clip(labels * 0.3 + rng.random(300) * 0.7, 0, 1),
                              "validation")  # fmt: skip
    assert set(pictures) == {"roc_curve", "precision_recall", "calibration"}
    metadata = picture_metadata(plane, key, pictures, "abc123")
    markdown = metadata["roc_curve"].value
    assert len(markdown) < 1000  # Dagster renders markdown inline only below 1,000 characters
    path = markdown.split(PICTURES_ROUTE + "/")[1].rstrip(")")
    assert path == "shop/pictures/big_spender/best_model/roc_curve-abc123.png"
    assert read_picture(plane, path) == pictures["roc_curve"] and pictures["roc_curve"].startswith(b"\x89PNG")


def test_regression_gets_residuals_and_labels_a_histogram():
    rng = np.random.default_rng(1)
    labels = rng.normal(size=200)
    assert set(model_pictures("regression", labels, labels + rng.normal(size=200) * 0.1, "validation")) == {
        "residuals"
    }
    assert model_pictures("multiclass_classification", np.arange(5), np.zeros((5, 5)), "validation") == {}
    assert label_histogram({"train": labels, "val": labels[:50]}, "regression").startswith(b"\x89PNG")
    assert label_histogram({"train": np.array([True, False, True])}, "binary_classification").startswith(
        b"\x89PNG"
    )
    assert label_histogram({"train": np.array([])}, "regression") is None


@pytest.mark.parametrize("path", ["shop/tables/orders.parquet", "shop/pictures/../tables/x.png",
                                  "shop/pictures/big_spender/study/missing.png", "shop/pictures/a/b.txt", "x.png"])  # fmt: skip
def test_only_existing_pictures_are_served(tmp_path, path):
    plane = DataPlane(root=str(tmp_path))
    plane.put_bytes(b"parquet", "shop", "tables", "orders.parquet")
    plane.put_bytes(b"png", "shop", "tables", "x.png")
    assert read_picture(plane, path) is None


def test_picture_parts_refuse_unsafe_names():
    with pytest.raises(ValueError, match="must be letters"):
        picture_parts(AssetKey(["shop", "a b", "study"]), "history", "v1")
