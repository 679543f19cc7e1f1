"""best_model's leaderboard in the UI: narrow enough for the page, every number still beside its note."""

from __future__ import annotations

from kumo_assets.best_model_report import leaderboard_table, published_verdict, served_text
from training.leaderboard import holdout_protocol

PUBLISHED = "RelBench: database frozen at the test cut"
ROWS = [
    {"model": "chosen: GBDT trial 1", "rows": "validation", "metric": "auroc", "value": 0.78, "low": 0.72,
     "high": 0.84, "note": "picked on these rows"},
    {"model": "served: GBDT trial 1 refit", "rows": "holdout (test)", "metric": "auroc", "value": 0.83,
     "low": 0.77, "high": 0.87, "note": holdout_protocol(None)},
    {"model": "published: RelGNN", "rows": "holdout (test)", "metric": "auroc", "value": 0.75, "low": None,
     "high": None, "note": PUBLISHED},
    {"model": "published: other", "rows": "holdout (test)", "metric": "mae", "value": 4.0, "low": None,
     "high": None, "note": PUBLISHED},
]  # fmt: skip


def test_the_table_keeps_each_note_and_says_which_published_numbers_compare():
    table = leaderboard_table(ROWS, {"observe_until": None, "protocol": "refit"})
    assert [column.name for column in table.schema.columns] == ["model", "rows", "value", "95% CI", "note"]
    assert table.schema.columns[2].description.startswith("auroc")  # the metric, named once
    chosen, served, published, other = [record.data for record in table.records]
    assert chosen["95% CI"] == "0.72\u20130.84" and published["95% CI"] == ""
    assert served["note"] == "refit on train + val, scored once; each row sees data up to its anchor"
    assert published["note"] == PUBLISHED + "; not comparable"
    assert other["note"] == f"mae; {PUBLISHED}; not comparable"  # another metric says so
    frozen = {"observe_until": "2010-01-01", "protocol": "train_rows"}
    assert [r.data["note"] for r in leaderboard_table(ROWS, frozen).records][2].endswith(
        "comparable only at the same cut"
    )
    assert published_verdict({"observe_until": None}).startswith("not comparable")
    assert "2010-01-01" in published_verdict(frozen) and "training rows only" in published_verdict(frozen)


def test_served_text_says_which_model_and_why():
    served = {"blend": False, "members": [{"family": "gbdt", "run_key": "abc"}],
              "threshold": {"value": 0.57881, "rule": "maximises F1 on validation rows"}}  # fmt: skip
    text = served_text(served, {"model": "GBDT trial 1 refit"})
    assert text == ("GBDT trial 1 refit: the study's best trial on validation. Runs gbdt abc; "
                    "threshold 0.5788 (maximises F1 on validation rows)")  # fmt: skip
    blend = {"blend": True, "members": [{"family": "gbdt", "run_key": "a"}, {"family": "gnn", "run_key": "b"}],
             "threshold": None}  # fmt: skip
    assert "beat the best trial alone on validation" in served_text(blend, {"model": "blend of GBDT + GNN"})
