"""Each task head: output shape, a finite loss that training drives down, and decoded predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.heads import TaskSpec, make_head
from tests.support.devices import DEVICES

ROWS, CHANNELS = 64, 8


def toy(task_type: str):
    """(spec, embeddings, targets) where the target is a simple function of the embedding."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(ROWS, CHANNELS, generator=generator)
    if task_type == "binary_classification":
        return TaskSpec(task_type), x, (x[:, 0] > 0).long()
    if task_type == "regression":
        y = 3.0 * x[:, 0] + 10.0
        return TaskSpec.from_labels(task_type, y.numpy()), x, y
    if task_type == "forecasting":
        y = torch.stack([x[:, 0], 2 * x[:, 1]], dim=1)
        return TaskSpec.from_labels(task_type, y.numpy()), x, y
    if task_type == "multiclass_classification":
        labels = np.array(["a", "b", "c"])[x[:, :3].argmax(dim=1).numpy()]
        spec = TaskSpec.from_labels(task_type, labels)
        return spec, x, torch.from_numpy(spec.class_index(labels))
    if task_type == "multilabel_classification":
        y = (x[:, :4] > 0).float()
        return TaskSpec.from_labels(task_type, y.numpy()), x, y
    y = torch.zeros(ROWS, 20)
    y[torch.arange(ROWS), x[:, :5].argmax(dim=1)] = 1.0  # each row's relevant target node
    return TaskSpec(task_type, outputs=20, top_k=3), x, y


EXPECTED_OUTPUT = {
    "binary_classification": (ROWS,),
    "regression": (ROWS,),
    "forecasting": (ROWS, 2),
    "multiclass_classification": (ROWS, 3),
    "multilabel_classification": (ROWS, 4),
    "ranking": (ROWS, 20),
    "link_prediction": (ROWS, 20),
}
EXPECTED_PREDICTION = {**EXPECTED_OUTPUT, "ranking": (ROWS, 3), "link_prediction": (ROWS, 3)}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("task_type", list(EXPECTED_OUTPUT))
def test_head_shapes_and_loss_goes_down(task_type, device):
    torch.manual_seed(0)
    spec, x, y = toy(task_type)
    x, y = x.to(device), y.to(device)
    head = make_head(spec, CHANNELS, layers=2).to(device)
    out = head(x)
    assert out.shape == EXPECTED_OUTPUT[task_type]
    first = head.loss(out, y)
    assert first.ndim == 0 and torch.isfinite(first)
    optimiser = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(150):
        optimiser.zero_grad()
        head.loss(head(x), y).backward()
        optimiser.step()
    assert head.loss(head(x), y) < 0.5 * first
    assert head.predict(head(x)).shape == EXPECTED_PREDICTION[task_type]


def test_predictions_decode_per_task_type():
    spec, _, _ = toy("multiclass_classification")
    probabilities = make_head(spec, CHANNELS).predict(torch.randn(ROWS, 3))
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(ROWS))
    assert spec.classes == ["a", "b", "c"] and spec.class_index(["c", "zzz"]).tolist() == [2, -1]

    spec, _, y = toy("regression")
    low, high = np.percentile(y.numpy(), [2, 98])
    values = make_head(spec, CHANNELS).predict(torch.linspace(-100, 100, ROWS))
    assert values.min() == pytest.approx(low) and values.max() == pytest.approx(high)  # clamped to the range

    spec, _x, y = toy("ranking")
    top = make_head(spec, CHANNELS).predict(torch.arange(20.0).repeat(ROWS, 1))
    assert top[0].tolist() == [19, 18, 17]


def test_unknown_task_type_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="has no head; known"):
        TaskSpec("clustering")
