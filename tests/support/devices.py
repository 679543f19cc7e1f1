"""The devices a model test runs on: the CPU always, CUDA whenever a GPU is present (marked ``cuda``, so
``pytest -m cuda`` runs only the GPU variants on a machine that has one)."""

from __future__ import annotations

import pytest
import torch

CUDA = torch.cuda.is_available()
DEVICES = [pytest.param("cpu", id="cpu")] + (
    [pytest.param("cuda", id="cuda", marks=pytest.mark.cuda)] if CUDA else []
)
# (device, trainer precision): CUDA in both of its training precisions
DEVICE_PRECISIONS = [pytest.param("cpu", "auto", id="cpu")] + (
    [
        pytest.param("cuda", precision, id=f"cuda-{precision}", marks=pytest.mark.cuda)
        for precision in ("tf32", "bf16")
    ]
    if CUDA
    else []
)
