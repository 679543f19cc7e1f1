"""Link prediction by the GBDT on grocery baskets, against the two baselines every recommender must beat.

Data: The Complete Journey (84.51° grocery transactions, 2017; read from ../shared/data/completejourney,
never shipped), a sample of households. Query: which products a household buys in the next 7 days, top 10.
Baselines measured in the same run on the same rows: global popularity (the last 30 days) and the
household's own most-bought products (then popularity). Prints MAP@10 / recall@10 and the ratio of the
GBDT to the better baseline.

    python benchmarks/bench_links.py [--households 600] [--trees 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.gbdt import GBDTConfig  # noqa: E402
from models.gnn import GNNConfig  # noqa: E402
from models.link_candidates import CandidateConfig, candidate_pairs, link_log  # noqa: E402
from models.metrics import compute_metrics  # noqa: E402
from models.trainer import TrainerConfig  # noqa: E402
from models.uncertainty import ScoredRows, grouped_bootstrap, paired_win_share  # noqa: E402
from relational.graph_tables import ingest_in_memory  # noqa: E402
from relational.keys import NODE_ID  # noqa: E402
from relational.pql.anchors import AnchorPlan  # noqa: E402
from relational.pql.training_table import build_training_table  # noqa: E402
from relational.schema import GraphSchema  # noqa: E402
from relational.spec_loader import load_spec  # noqa: E402
from stores.feature_store import build_feature_store, open_feature_store  # noqa: E402
from stores.graph_store import open_graph_store  # noqa: E402
from stores.store_inputs import (  # noqa: E402
    build_graph_from_tables,
    fit_cutoff,
    node_tables,
)
from training.link_trial import link_query, run_gbdt_link_trial  # noqa: E402
from training.list_labels import label_vocabulary, multi_hot_splits  # noqa: E402
from training.trial import GNNTrialConfig, make_splits, run_gnn_trial  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "completejourney"
QUERY = (
    "PREDICT LIST_DISTINCT(transactions.product_id, 0, 7, days) RANK TOP 10 FOR EACH households.household_id"
)
SPEC = """\
tables:
  households: {implied: true, primary_key: household_id}
  stores: {implied: true, primary_key: store_id}
  products: {source: products.parquet, primary_key: product_id}
  transactions:
    source: transactions.parquet
    primary_key: transaction_id
    time_column: transaction_timestamp
    foreign_keys: {household_id: households, product_id: products, store_id: stores}
    drop_columns: [week]
"""
K = 10


def day(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


PLAN = AnchorPlan(timestamps={
    "train": list(range(day("2017-03-05"), day("2017-10-23"), 14 * 86_400)),
    "val": [day("2017-11-05"), day("2017-11-19")],
    "test": [day("2017-12-03"), day("2017-12-17")],
})  # fmt: skip


def prepare(root: Path, households: int, seed: int) -> Path:
    """A sample of households with all their transactions (a row id added as the key), and the products."""
    transactions = pl.read_parquet(DATA / "transactions.parquet")
    chosen = transactions.get_column("household_id").unique().sort().sample(households, seed=seed)
    transactions = transactions.filter(pl.col("household_id").is_in(chosen.implode()))
    transactions.with_row_index("transaction_id").write_parquet(root / "transactions.parquet")
    pl.read_parquet(DATA / "products.parquet").write_parquet(root / "products.parquet")
    (root / "graph.yaml").write_text(SPEC)
    return root / "graph.yaml"


def baselines(log, table: pl.DataFrame, entity: np.ndarray, as_of: np.ndarray) -> dict[str, np.ndarray]:
    """Top-K per row by popularity, and by the entity's own purchase counts (ties: popularity)."""
    pairs = candidate_pairs(log, entity, as_of, CandidateConfig(history_limit=200, popular_limit=K))
    ranked = {}
    for name, order in (
        ("popularity", ["popularity_rank"]),
        ("own history", ["link_count_all", "popularity_rank"]),
    ):
        descending = [column == "link_count_all" for column in order]
        top = (
            pairs.sort(["row", *order], descending=[False, *descending])
            .group_by("row", maintain_order=True)
            .head(K)
        )
        ranked[name] = np.stack(top.group_by("row", maintain_order=True).agg("target")["target"].to_numpy())
    return ranked


def shown_splits(args) -> tuple[str, ...]:
    """Validation always; the test rows only with --report-test."""
    return ("val", "test") if args.report_test else ("val",)


def train_gnn(spec, frames: dict, metas: dict, table: pl.DataFrame, scratch: Path, args) -> dict:
    """RDL's link head on the same rows: a 2-layer SAGE GNN whose seed embedding scores a learned vector
    per product (softmax over all products), trained on the graph and feature stores built here."""
    build_graph_from_tables(spec, frames, scratch / "graph")
    build_feature_store(scratch / "features", node_tables(frames, metas, fit_cutoff(spec)))
    graph, features = open_graph_store(scratch / "graph"), open_feature_store(scratch / "features")
    keys = frames["households"].sort(NODE_ID).select("household_id")
    splits = make_splits(table, keys, "households", "links", seed=args.seed)
    products = frames["products"].sort(NODE_ID).get_column("product_id")
    vocabulary = label_vocabulary("link_prediction", splits["train"].labels, products)
    splits = multi_hot_splits(splits, vocabulary)
    config = GNNTrialConfig(GNNConfig(conv="sage", channels=64, layers=2, aggr="sum", norm="layer",
                                      revisits=args.gnn_revisits),
                            TrainerConfig(epochs=args.gnn_epochs, lr=0.005, seed=args.seed, patience=0, top_k=K),
                            fanouts=tuple(args.gnn_fanouts), strategy=args.gnn_strategy, batch_size=256)  # fmt: skip
    started = time.perf_counter()
    result = run_gnn_trial(
        graph,
        features,
        splits,
        "link_prediction",
        config,
        threads=2,
        label_values=vocabulary.values,
        target_type="products",
        holdout=args.report_test,
    )
    return {
        **{split: result.metrics[split] for split in shown_splits(args)},
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=600)
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--objective", default="lambdarank", choices=["lambdarank", "binary"])
    parser.add_argument(
        "--train-negatives", type=int, default=40, help="negative candidates kept per training row (0 = all)"
    )
    parser.add_argument("--gnn-epochs", type=int, default=0, help="also train the GNN for this many epochs")
    parser.add_argument(
        "--gnn-revisits",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the GNN's link head also scores targets in the seed's own subgraph",
    )
    parser.add_argument(
        "--gnn-strategy",
        default="uniform",
        choices=["uniform", "last"],
        help="which neighbours the GNN's sampler keeps: a uniform draw or the most recent",
    )
    parser.add_argument(
        "--gnn-fanouts",
        type=int,
        nargs="+",
        default=[128, 4],
        help="the GNN's neighbours per hop: households -> transactions -> products",
    )
    parser.add_argument(
        "--report-test",
        action="store_true",
        help="also score the test rows (the holdout: read once, after every choice)",
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if not DATA.exists():
        sys.exit(f"{DATA} is missing: this benchmark reads The Complete Journey from ../shared/data")
    started = time.perf_counter()
    scratch = tempfile.TemporaryDirectory(prefix="kumo-links-")
    spec = load_spec(prepare(Path(scratch.name), args.households, args.seed))
    built = ingest_in_memory(spec)
    frames = {name: table.frame for name, table in built.items()}
    schema = GraphSchema.from_built_tables(spec, built)
    training = build_training_table(QUERY, schema, frames, PLAN)
    table, link = training.table, link_query(training.meta["parsed"])
    print(f"data: {frames['transactions'].height:,} transactions, {frames['products'].height:,} products; "
          f"rows per split {dict(table.group_by('split').len().iter_rows())}; "
          f"setup {time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip

    keys = frames["households"].select("household_id", NODE_ID)
    result = run_gbdt_link_trial(frames, schema, "households", keys, table, link,
                                 GBDTConfig(n_estimators=args.trees, seed=args.seed), top_k=K,
                                 objective=args.objective, train_negatives=args.train_negatives or None,
                                 holdout=args.report_test)  # fmt: skip
    log = link_log(frames, schema, link.event_table, link.target_column, link.via)
    product_node = dict(
        zip(*frames["products"].select("product_id", NODE_ID).to_dict().values(), strict=True)
    )
    shown, judged = shown_splits(args), shown_splits(args)[-1]  # judged: the split the comparisons below read
    report = {"gbdt": {split: result.metrics[split] for split in shown},
              "gbdt_seconds": {"features": result.feature_seconds, "fit": result.fit_seconds},
              "pairs_trained": result.train_rows, "features": result.features}  # fmt: skip
    for split in shown:
        rows = table.filter(pl.col("split") == split).join(
            keys.rename({"household_id": "entity"}), on="entity", maintain_order="left"
        )
        truth = [np.array([product_node[p] for p in listed if p in product_node], dtype=np.int64)
                 for listed in rows["label"].to_list()]  # fmt: skip
        for name, ranked in baselines(
            log, rows, rows[NODE_ID].to_numpy(), rows["anchor_time"].to_numpy()
        ).items():
            report.setdefault(name, {})[split] = compute_metrics("link_prediction", truth, ranked, k=K)
            if name == "own history" and split == judged:  # the same rows, resampled by household
                gbdt = result.scored[judged]
                own = ScoredRows(truth, ranked, rows[NODE_ID].to_numpy())
                interval = grouped_bootstrap("link_prediction", f"map@{K}", gbdt, k=K)
                report["gbdt_interval"] = [interval.low, interval.high, interval.groups]
                report["gbdt_beats_own_history"] = paired_win_share(
                    "link_prediction", f"map@{K}", gbdt, own, k=K
                )
    models = ["popularity", "own history", "gbdt"]
    if args.gnn_epochs:
        metas = {name: value.meta for name, value in built.items()}
        report["gnn"] = train_gnn(spec, frames, metas, table, Path(scratch.name), args)
        models.append("gnn")
    scratch.cleanup()
    header = " | ".join(f"{split} {name}@{K}" for split in shown for name in ("MAP", "recall"))
    print(f"\n| model | {header} |\n|---|" + "---:|" * (2 * len(shown)))
    for name in models:
        cells = [
            f"{report[name][split][f'{metric}@{K}']:.4f}" for split in shown for metric in ("map", "recall")
        ]
        print(f"| {name} | {' | '.join(cells)} |")
    best = max(report[name][judged][f"map@{K}"] for name in ("popularity", "own history"))
    ratio = report["gbdt"][judged][f"map@{K}"] / best
    print(f"\ngbdt / best baseline {judged} MAP@{K}: {ratio:.2f}x; candidate recall ({judged}) "
          f"{result.metrics[judged]['candidate_recall']:.3f}; gbdt features {result.feature_seconds:.0f} s, "
          f"fit {result.fit_seconds:.0f} s; {result.train_rows:,} training pairs x {result.features} features; "
          f"wall {time.perf_counter() - started:.0f} s")  # fmt: skip
    low, high, households = report["gbdt_interval"]
    print(f"gbdt {judged} MAP@{K} 95% interval [{low:.4f}, {high:.4f}] over {households} households resampled; "
          f"it beats own history on {report['gbdt_beats_own_history']:.1%} of those resamples")  # fmt: skip
    if "gnn" in report:
        print(f"gnn: {args.gnn_epochs} epochs in {report['gnn']['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
