"""The batch cache's byte format: a real batch round-trips exactly (dtypes, shapes, empty types), its
tensors are writable and aligned, and anything else is refused by name."""

from __future__ import annotations

import pytest
import torch

from stores.batch_codec import BatchFormatError, decode_content, encode_content
from stores.fetcher import decode_batch
from tests.stores.test_fetcher import fetcher, stores  # noqa: F401  (the fixture)


def flat(content: dict) -> dict:
    """Every tensor of a content dict by its place in it."""
    out = {("node_type",): content["node_type"]}
    for section in ("nodes", "edges"):
        for group, entry in content[section].items():
            out.update({(section, group, name): value for name, value in entry.items()})
    out.update({("seed", name): value for name, value in content["seed"].items()})
    return out


def test_a_real_batch_round_trips_exactly(stores):  # noqa: F811
    _, _, split = stores
    fetch = fetcher(stores)
    content = fetch.content(split, 7, 0)
    decoded = decode_content(encode_content(content))
    before, after = flat(content), flat(decoded)
    assert before.keys() == after.keys()
    assert any(
        value.numel() == 0 for value in before.values() if isinstance(value, torch.Tensor)
    )  # empty types
    for place, value in before.items():
        if isinstance(value, torch.Tensor):
            assert after[place].dtype == value.dtype and after[place].shape == value.shape, place
            assert torch.equal(after[place], value), place
            assert after[place].data_ptr() % value.element_size() == 0, place  # aligned for its type
        else:
            assert after[place] == value
    assert str(decode_batch(encode_content(content))) == str(decode_batch(content))


def test_decoded_tensors_are_writable_and_independent_of_the_payload(stores):  # noqa: F811
    _, _, split = stores
    payload = encode_content(fetcher(stores).content(split, 7, 0))
    first, second = decode_content(payload), decode_content(payload)
    labels = first["seed"]["y"]
    labels += 1  # a model may write into its batch
    assert not torch.equal(labels, second["seed"]["y"])


def test_other_bytes_are_refused_by_name():
    with pytest.raises(BatchFormatError, match="not a cached minibatch"):
        decode_content(b"PK\x03\x04 a torch.save zip")
