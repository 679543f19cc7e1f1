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


def test_the_study_leaderboard_says_why_a_trial_failed(tmp_path):
    """A real slot whose GBDT trials fit nowhere: the study page's leaderboard gains a "why it failed" column
    with the provisioner's reason; without failures the column is not there."""
    from kumo_assets.hpo_report import leaderboard_table
    from tests.training.test_hpo_driver import misfit_study
    from training.hpo import leaderboard

    study, outcome, _ = misfit_study(tmp_path)
    table = leaderboard_table(leaderboard(study), "auroc")
    names = [column.name for column in table.schema.columns]
    assert names[-1] == "why it failed"
    reasons = {record.data["trial"]: record.data["why it failed"] for record in table.records}
    assert all(reasons[number].startswith("does not fit: trial gbdt(") for number in outcome.unplaceable)
    assert all(len(reasons[number]) <= 240 for number in outcome.unplaceable)
    assert all(reasons[number] == "" for number in outcome.finished)
    completed = [row for row in leaderboard(study) if row["failure"] is None]
    assert "why it failed" not in [c.name for c in leaderboard_table(completed, "auroc").schema.columns]
