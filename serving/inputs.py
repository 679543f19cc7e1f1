"""The input columns whose drift predictions watch: the GBDT's most important features, else the entity's
own numerical columns as the GNN reads them from the feature store. Sampled, so checks stay cheap."""

from __future__ import annotations

import numpy as np
import polars as pl

from models.propositional import build_relational_features
from models.propositional_config import PropositionalConfig
from relational.keys import NODE_ID
from serving.predict import ScoringData
from serving.scoring import top_features
from serving.served_model import GBDTMember, ServedModel

__all__ = ["TOP_INPUTS", "input_columns"]

TOP_INPUTS = 5
SAMPLE_ROWS = 5_000


def input_columns(served: ServedModel, data: ScoringData, rows: pl.DataFrame, entity_table: str,
                  seed: int = 0) -> dict[str, np.ndarray]:  # fmt: skip
    """Values of the watched input columns on (a sample of) resolved ``rows`` (`serving.predict.resolve_rows`)."""
    if rows.height > SAMPLE_ROWS:
        rows = rows.sample(SAMPLE_ROWS, seed=seed)
    gbdt = next((member for member in served.members if isinstance(member, GBDTMember)), None)
    if gbdt is not None:
        names = top_features(gbdt, TOP_INPUTS)
        entities = pl.DataFrame(
            {NODE_ID: rows["_table_node"].cast(pl.Int64), "anchor_time": rows["anchor_time"]}
        )
        design = build_relational_features(data.frames, data.schema, entity_table, entities, PropositionalConfig(),
                                           None, gbdt.vocabulary_limit, gbdt.masked)  # fmt: skip
        return {name: design[name].to_numpy() for name in names if name in design.columns}
    block = data.features.blocks.get((entity_table, "numerical"))
    columns = data.features.schema["node_types"].get(entity_table, {}).get("columns", [])
    hidden = {column for member in served.members for column in member.masked.get(entity_table, ())}
    numerical = [column for column in columns
                 if column["block"] == "numerical" and column["column"] not in hidden][:TOP_INPUTS]  # fmt: skip
    if block is None:
        return {}
    nodes = rows["_node"].to_numpy()
    return {
        f"{entity_table}.{c['column']}": np.asarray(block[nodes, c["offset"]], dtype=np.float64)
        for c in numerical
    }
