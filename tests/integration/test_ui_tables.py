"""Native UI tables: typed schemas, numbers rounded for reading, sizes in human units."""

from __future__ import annotations

import pytest

from kumo_assets.ui_tables import human_bytes, readable, ui_table


@pytest.mark.parametrize(("size", "shown"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"),
                                             (5 * 1024**3, "5.0 GiB"), (3 * 1024**5, "3145728.0 GiB")])  # fmt: skip
def test_sizes_read_in_human_units(size, shown):
    assert human_bytes(size) == shown


def test_tables_keep_their_schema_and_round_floats():
    table = ui_table([("split", "string"), ("rate", "float"), ("rows", "int")],
                     [["train", 0.123456789, 10], ["val", float("nan"), 0]]).value  # fmt: skip
    assert [column.name for column in table.schema.columns] == ["split", "rate", "rows"]
    assert [record.data for record in table.records] == [
        {"split": "train", "rate": 0.1235, "rows": 10}, {"split": "val", "rate": "nan", "rows": 0}]  # fmt: skip
    assert readable(12345.678) == 12350.0 and readable("x") == "x"
