"""Scoring rows with stored models, streamed in bounded chunks, exactly as the training path evaluates them.

A GNN scores through the same fetcher, sampler seed and batch order as `run_gnn_trial`'s evaluation (batch
index b of the whole row list draws the same neighbours whichever chunk it falls in), and every sampled
neighbour is checked to be no later than its seed's anchor. A GBDT builds the same propositional features
with the category columns it was trained on (`vocabulary_limit`). Memory stays bounded: rows move through in
chunks of ``chunk_rows`` and only one chunk's outputs are held at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from models.blending import blend_outputs
from models.heads import RANKING_TYPES
from models.propositional import build_relational_features
from models.propositional_config import PropositionalConfig
from models.trainer import resolve_device
from relational.keys import NODE_ID
from relational.pql.errors import LeakageError
from serving.served_model import GBDTMember, GNNMember, ServedModel, ServingError
from stores.feature_store import StoredFeatures
from stores.fetcher import MinibatchFetcher, TrainingSplit
from stores.graph_store import StoredGraph
from stores.sampler import SamplerConfig
from training.link_trial import LinkQuery, rank_link_rows

__all__ = ["CHUNK_ROWS", "ScoredChunk", "ScoringInputs", "embedding_chunks", "score_chunks"]

CHUNK_ROWS = 65_536
INPUT_SAMPLE_ROWS = 5_000  # rows of each block whose top input columns the input-drift check compares
FEATURE_BLOCK_BYTES = 512 * 2**20  # a GBDT's features for this many bytes of rows are built in one call


@dataclass
class ScoringInputs:
    """What scoring reads: the stores for GNNs, the published tables and schema for GBDTs, and the rows."""

    graph: StoredGraph
    features: StoredFeatures
    frames: Mapping[str, pl.DataFrame] | None  # published tables (GBDT members only)
    schema: object | None  # GraphSchema of those tables
    entity_table: str
    nodes: np.ndarray  # entity node ids, one per row
    anchors: np.ndarray  # anchor times (UTC seconds), one per row
    threads: int | None = None
    table_nodes: np.ndarray | None = None  # the same entities' ids in the published tables (GBDT features)
    link: LinkQuery | None = None  # link prediction: what a GBDT ranker builds candidates from


@dataclass
class ScoredChunk:
    """Rows ``start:stop`` of the input and their served outputs (ranked tasks: target indices and scores)."""

    start: int
    stop: int
    outputs: np.ndarray
    scores: np.ndarray | None = None  # ranked tasks: the score of each of the top-K indices in ``outputs``
    sampled_nodes_checked: int = 0
    probabilities: np.ndarray | None = None  # a binary blend: the mean of its members' probabilities
    inputs: dict[str, np.ndarray] | None = None  # a GBDT's top input columns on a sample of its block's rows


def score_chunks(
    served: ServedModel, inputs: ScoringInputs, chunk_rows: int = CHUNK_ROWS
) -> Iterator[ScoredChunk]:
    """The served model's outputs for every row, chunk by chunk (a blend blends each chunk's members)."""
    streams = [_member_stream(member, served.task_type, inputs, chunk_rows) for member in served.members]
    for parts in zip(*streams, strict=True):
        start, stop = parts[0].start, parts[0].stop
        checked = sum(part.sampled_nodes_checked for part in parts)
        sampled = next((part.inputs for part in parts if part.inputs is not None), None)
        if len(parts) == 1:
            yield ScoredChunk(start, stop, parts[0].outputs, parts[0].scores, checked, None, sampled)
            continue
        references = [member.reference for member in served.members]
        if served.task_type == "binary_classification" and any(ref is None for ref in references):
            raise ServingError(
                "a blend member has no validation scores to blend against: re-materialise best_model"
            )
        outputs = blend_outputs(served.task_type, [part.outputs for part in parts], references)
        mean = (
            np.mean([part.outputs for part in parts], axis=0)
            if served.task_type == "binary_classification"
            else None
        )
        yield ScoredChunk(start, stop, outputs, None, checked, mean, sampled)


def embedding_chunks(
    member: GNNMember, inputs: ScoringInputs, chunk_rows: int = CHUNK_ROWS
) -> Iterator[ScoredChunk]:
    """The GNN's entity embeddings (float32, one fixed-size vector per row), chunk by chunk."""
    yield from _rechunk(_gnn_batches(member, None, inputs, want_embeddings=True), chunk_rows)


def _member_stream(member, task_type: str, inputs: ScoringInputs, chunk_rows: int) -> Iterator[ScoredChunk]:
    if isinstance(member, GNNMember):
        return _rechunk(_gnn_batches(member, task_type, inputs), chunk_rows)
    if isinstance(member, GBDTMember) and task_type == "link_prediction":
        return _link_chunks(member, inputs, chunk_rows)
    if isinstance(member, GBDTMember):
        return _gbdt_chunks(member, inputs, chunk_rows)
    raise ServingError(f"cannot score a {type(member).__name__}")


def _gnn_batches(
    member: GNNMember, task_type: str | None, inputs: ScoringInputs, want_embeddings: bool = False
) -> Iterator[ScoredChunk]:
    """Batch by batch, as `run_gnn_trial` evaluates: the same batch size, sampler seed and row order. Torch and
    the sampler use ``inputs.threads`` (default half the cores, as a trial: torch's spinning threads on every
    core slowed scoring 7-25x on a busy machine); torch's own setting is restored afterwards."""
    threads = inputs.threads or max(1, (os.cpu_count() or 2) // 2)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield from _gnn_forward(member, task_type, inputs, threads, want_embeddings)
    finally:
        torch.set_num_threads(previous)


def _gnn_forward(
    member: GNNMember, task_type: str | None, inputs: ScoringInputs, threads: int, want_embeddings: bool
) -> Iterator[ScoredChunk]:
    graph, features = inputs.graph, inputs.features.with_masked(member.masked)  # what its training hid
    model = member.build(dict(graph.node_counts), graph.edge_types, features.schema["node_types"])
    device = resolve_device(
        "auto"
    )  # the GPU when there is one: scoring needs no gradients, any device serves
    model = model.to(device)
    config = member.state["config"]
    sampling = SamplerConfig(tuple(config["fanouts"]), config["strategy"])
    fetcher = MinibatchFetcher(graph, features, sampling, int(config["eval_batch_size"]), threads=threads)
    rows = len(inputs.nodes)
    split = TrainingSplit("serving", model.seed_type, inputs.nodes.astype(np.int64), inputs.anchors.astype(np.int64),
                          np.zeros(rows, dtype=np.float32))  # fmt: skip
    ranked = task_type in RANKING_TYPES
    top_k = member.spec.top_k
    with torch.inference_mode():  # no autograd bookkeeping at all: serving never needs gradients
        for batch in fetcher.epoch(split, epoch_seed=member.trainer_config.seed, shuffle=False):
            checked = _check_no_future(batch, model.seed_type)
            batch = batch.to(device)
            output, embedding = model(batch)
            ids = batch[model.seed_type].input_id.cpu().numpy()
            start, stop = int(ids[0]), int(ids[-1]) + 1
            if want_embeddings:
                yield ScoredChunk(start, stop, embedding.float().cpu().numpy(), None, checked)
            elif ranked:
                values, indices = output.float().topk(min(top_k, output.shape[-1]), dim=-1)
                yield ScoredChunk(start, stop, indices.cpu().numpy(), values.cpu().numpy(), checked)
            else:
                yield ScoredChunk(start, stop, model.head.predict(output).cpu().numpy(), None, checked)


def _check_no_future(batch, seed_type: str) -> int:
    """The leakage audit of a scored batch: every sampled node's time <= the anchor of the seed it serves."""
    seed_times = batch[seed_type].seed_time
    checked = 0
    for node_type in batch.node_types:
        store = batch[node_type]
        if "time" not in store:
            continue
        late = store.time > seed_times[store.batch]
        checked += int(store.time.numel())
        if bool(late.any()):
            raise LeakageError(f"{int(late.sum())} sampled {node_type} node(s) are later than their seed's anchor: "
                               "the graph store's times or the sampler are wrong; rebuild the graph store")  # fmt: skip
    return checked


def _gbdt_chunks(member: GBDTMember, inputs: ScoringInputs, chunk_rows: int) -> Iterator[ScoredChunk]:
    """Propositional features and LightGBM scores, a block of rows at a time (`_blocks`)."""
    if inputs.frames is None or inputs.schema is None:
        raise ServingError("GBDT scoring needs the published tables")
    nodes = inputs.nodes if inputs.table_nodes is None else inputs.table_nodes

    def score(start: int, stop: int) -> ScoredChunk:
        entities = pl.DataFrame({NODE_ID: nodes[start:stop].astype(np.int64),
                                 "anchor_time": inputs.anchors[start:stop].astype(np.int64)})  # fmt: skip
        design = build_relational_features(inputs.frames, inputs.schema, inputs.entity_table, entities,
                                           PropositionalConfig(), None, member.vocabulary_limit,
                                           member.masked)  # fmt: skip
        sample = design.select([name for name in top if name in design.columns]).head(INPUT_SAMPLE_ROWS)
        return ScoredChunk(start, stop, member.model.predict(design),
                           inputs={name: sample[name].to_numpy() for name in sample.columns})  # fmt: skip

    top = top_features(member)

    yield from _rechunk(_blocks(len(nodes), _block_rows(member, chunk_rows), score), chunk_rows)


def top_features(member: GBDTMember, count: int = 5) -> list[str]:
    """The GBDT's most important input columns (by gain): what the input-drift check watches."""
    model = getattr(member.model, "scorer", member.model)  # a link ranker's pair scorer
    return list(model.feature_importance())[:count]


def _link_chunks(member: GBDTMember, inputs: ScoringInputs, chunk_rows: int) -> Iterator[ScoredChunk]:
    """A GBDT pair ranker's top-K targets per row: candidates and features as its trial built them."""
    if inputs.link is None or inputs.frames is None:
        raise ServingError("ranking links with a GBDT needs the published tables and the query's link")
    nodes = inputs.nodes if inputs.table_nodes is None else inputs.table_nodes
    first = int(inputs.anchors.min()) if len(inputs.anchors) else None  # one popularity fallback for all

    def rank(start: int, stop: int) -> ScoredChunk:
        ranked, scores = rank_link_rows(member.model, inputs.frames, inputs.schema, inputs.entity_table, inputs.link,
                                        nodes[start:stop], inputs.anchors[start:stop], member.vocabulary_limit,
                                        first)  # fmt: skip
        return ScoredChunk(start, stop, ranked, scores)

    yield from _rechunk(_blocks(len(nodes), chunk_rows, rank), chunk_rows)


def _block_rows(member: GBDTMember, chunk_rows: int) -> int:
    """Rows whose features are built in one call: as many as `FEATURE_BLOCK_BYTES` of float64 features hold
    (a call reads every table once, whatever its row count), never fewer than a chunk, in whole chunks."""
    width = max(len(getattr(member.model, "feature_names", []) or []), 1)
    rows = max(FEATURE_BLOCK_BYTES // (8 * width), chunk_rows)
    return rows - rows % chunk_rows


def _blocks(total: int, block_rows: int, score) -> Iterator[ScoredChunk]:
    for start in range(0, total, block_rows):
        yield score(start, min(start + block_rows, total))


def _rechunk(batches: Iterator[ScoredChunk], size: int) -> Iterator[ScoredChunk]:
    """Consecutive batches regrouped into chunks of exactly ``size`` rows (the last one shorter)."""
    pending: list[ScoredChunk] = []
    held = 0
    for batch in batches:
        pending.append(batch)
        held += batch.stop - batch.start
        while held >= size:
            chunk, pending, held = _take(pending, size)
            yield chunk
    if held:
        yield _take(pending, held)[0]


def _take(pending: list[ScoredChunk], size: int) -> tuple[ScoredChunk, list[ScoredChunk], int]:
    outputs = np.concatenate([part.outputs for part in pending])
    scores = None if pending[0].scores is None else np.concatenate([part.scores for part in pending])
    start = pending[0].start
    checked = sum(part.sampled_nodes_checked for part in pending)
    sampled = next((part.inputs for part in pending if part.inputs is not None), None)
    chunk = ScoredChunk(
        start, start + size, outputs[:size], None if scores is None else scores[:size], checked, None, sampled
    )
    rest_rows = len(outputs) - size
    if rest_rows == 0:
        return chunk, [], 0
    rest = ScoredChunk(
        start + size, start + len(outputs), outputs[size:], None if scores is None else scores[size:]
    )
    return chunk, [rest], rest_rows
