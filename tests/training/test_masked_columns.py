"""`masked_columns`: a training table's ``masked_input_columns`` ("table.column") grouped by table."""

from __future__ import annotations

import pytest

from training.run import masked_columns


def test_masked_input_columns_are_grouped_by_table():
    assert masked_columns([]) == {}
    assert masked_columns(["users.age", "reports.is_fraud", "users.odd.name"]) == {
        "users": ("age", "odd.name"), "reports": ("is_fraud",)}  # fmt: skip


@pytest.mark.parametrize("name", ["age", "users.", ".age", ""])
def test_a_name_without_its_table_is_refused_not_ignored(name):
    with pytest.raises(ValueError, match=r"is not 'table\.column'"):
        masked_columns([name])
