"""The training table's checks: the leakage audit (blocking) and enough labels in every split (warns)."""

from __future__ import annotations

from relational.pql.training_table import training_table_checks


def _meta(task_type: str, distribution: dict) -> dict:
    return {"task_type": task_type, "label_distribution": distribution,
            "leakage_audit": {"passed": True, "rows": 900, "anchors_with_rows": 12}}  # fmt: skip


def test_a_split_with_too_few_of_one_class_warns_and_says_how_many():
    binary = {"train": {"rows": 500, "positives": 120}, "val": {"rows": 200, "positives": 7},
              "test": {"rows": 200, "positives": 190}}  # fmt: skip
    leakage, labels = training_table_checks(_meta("binary_classification", binary))
    assert leakage.name == "leakage_audit" and leakage.passed and leakage.blocking
    assert leakage.metadata == {"rows": 900, "anchors_with_rows": 12}
    assert labels.name == "labels_per_split" and not labels.passed and not labels.blocking
    assert "val: 7 positives" in labels.description and "test: 10 negatives" in labels.description
    assert "train" not in labels.description.split(":", 1)[1].split(".")[0]  # train is fine
    assert labels.metadata["train"] == "120 positives, 380 negatives"


def test_enough_rows_pass_and_an_empty_split_does_not():
    regression = {split: {"rows": 50, "mean": 1.0} for split in ("train", "val", "test")}
    assert training_table_checks(_meta("regression", regression))[1].passed
    regression["test"] = {"rows": 0}
    [_, labels] = training_table_checks(_meta("regression", regression))
    assert not labels.passed and "test: 0 rows" in labels.description
    assert training_table_checks(_meta("regression", regression), minimum=0)[1].passed
