"""Column encoders of the feature store: fitted on training-era rows, applied to every row.

Per semantic type: numerical -> standardised float32 plus a missing flag (log1p first for heavy-tailed
non-negative columns); timestamp -> calendar features (scaled year, month/weekday/hour as sin/cos) plus a
missing flag; categorical -> int32 code (0 = null, 1 = rare or unseen); multicategorical -> multi-hot over the
most frequent tokens; text -> a float32 embedding (a real sentence model when given, else signed feature
hashing of words). Ids and keys are never features.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl

__all__ = ["BLOCKS", "ColumnEncoding", "EncoderOptions", "encode_table", "fit_table"]

BLOCKS = ("numerical", "categorical", "text")
_CALENDAR = 8  # scaled year, month sin/cos, weekday sin/cos, hour sin/cos, missing flag


@dataclass(frozen=True)
class EncoderOptions:
    max_categories: int = 4000
    min_category_count: int = 2  # rarer values share the unknown code
    max_tokens: int = 32  # multicategorical vocabulary per column
    hash_dimensions: int = 64  # text fallback width
    heavy_tail_ratio: float = 100.0  # p99 / median above which a non-negative column is log1p'd


@dataclass
class ColumnEncoding:
    """Where a column lives in its block and the statistics its encoder was fitted with."""

    column: str
    stype: str
    block: str
    offset: int
    width: int
    stats: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def fit_table(
    frame: pl.DataFrame,
    stypes: Mapping[str, dict],
    fit_rows: np.ndarray | None = None,
    options: EncoderOptions | None = None,
    text_width: int | None = None,
) -> list[ColumnEncoding]:
    """Choose an encoder per feature column and fit its statistics on ``fit_rows`` (a boolean mask).

    Args:
        stypes: column -> {"stype": ..., "separator": ...} as ingest recorded them.
        text_width: width of the text embeddings when a sentence model is used (else hashing).
    """
    options = options or EncoderOptions()
    fitted = frame if fit_rows is None else frame.filter(pl.Series(fit_rows))
    offsets = dict.fromkeys(BLOCKS, 0)
    encodings = []
    for column, decision in stypes.items():
        stype = decision["stype"]
        if stype == "id" or column not in frame.columns:
            continue
        values = fitted.get_column(column)
        if stype == "numerical":
            block, width, stats = "numerical", 2, _fit_numerical(values, options)
        elif stype == "timestamp":
            block, width, stats = "numerical", _CALENDAR, _fit_years(values)
        elif stype == "categorical":
            block, width, stats = "categorical", 1, _fit_categories(values, options)
        elif stype == "multicategorical":
            stats = _fit_tokens(values, decision.get("separator") or "|", options)
            block, width = "numerical", max(len(stats["tokens"]), 1)
        elif stype == "text":
            block, width = "text", text_width or options.hash_dimensions
            stats = {"method": "model" if text_width else "hashing"}
        else:
            continue
        encodings.append(ColumnEncoding(column, stype, block, offsets[block], width, stats))
        offsets[block] += width
    return encodings


def encode_table(
    frame: pl.DataFrame,
    encodings: list[ColumnEncoding],
    embed_text: Callable[[list[str]], np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Encode every row into row-major blocks: numerical/text float32, categorical int32."""
    widths = dict.fromkeys(BLOCKS, 0)
    for encoding in encodings:
        widths[encoding.block] = max(widths[encoding.block], encoding.offset + encoding.width)
    rows = frame.height
    blocks = {
        "numerical": np.zeros((rows, widths["numerical"]), np.float32),
        "categorical": np.zeros((rows, widths["categorical"]), np.int32),
        "text": np.zeros((rows, widths["text"]), np.float32),
    }
    for encoding in encodings:
        values = frame.get_column(encoding.column)
        target = blocks[encoding.block][:, encoding.offset : encoding.offset + encoding.width]
        if encoding.stype == "numerical":
            target[:] = _encode_numerical(values, encoding.stats)
        elif encoding.stype == "timestamp":
            target[:] = _encode_calendar(values, encoding.stats)
        elif encoding.stype == "categorical":
            target[:, 0] = _encode_categories(values, encoding.stats)
        elif encoding.stype == "multicategorical":
            target[:] = _encode_tokens(values, encoding.stats, encoding.width)
        elif encoding.stype == "text":
            target[:] = _encode_text(values, encoding, embed_text)
    return {name: block for name, block in blocks.items() if block.shape[1] > 0}


# -- numerical -------------------------------------------------------------------------------------


def _fit_numerical(values: pl.Series, options: EncoderOptions) -> dict:
    present = values.drop_nulls().cast(pl.Float64).to_numpy()
    present = present[np.isfinite(present)]
    log = False
    if len(present) and present.min() >= 0:
        median = float(np.median(present))
        p99 = float(np.percentile(present, 99))
        log = p99 > options.heavy_tail_ratio * max(median, 1e-12) and p99 > 0
    transformed = np.log1p(present) if log else present
    mean = float(transformed.mean()) if len(transformed) else 0.0
    std = float(transformed.std()) if len(transformed) else 0.0
    return {"mean": mean, "std": std if std > 0 else 1.0, "log": log, "fitted_rows": len(present)}


def _encode_numerical(values: pl.Series, stats: dict) -> np.ndarray:
    raw = values.cast(pl.Float64).to_numpy(allow_copy=True).astype(np.float64, copy=True)
    missing = ~np.isfinite(raw)
    raw[missing] = 0.0
    if stats["log"]:
        raw = np.log1p(np.maximum(raw, 0.0))
    scaled = (raw - stats["mean"]) / stats["std"]
    scaled[missing] = 0.0
    return np.stack([scaled, missing.astype(np.float64)], axis=1)


# -- timestamps --------------------------------------------------------------------------------------


def _fit_years(values: pl.Series) -> dict:
    seconds = values.drop_nulls().cast(pl.Int64).to_numpy()
    years = 1970 + seconds / (365.2425 * 86400)
    return {"year_mean": float(years.mean()) if len(years) else 1970.0,
            "year_std": float(years.std()) if len(years) > 1 and years.std() > 0 else 1.0}  # fmt: skip


def _encode_calendar(values: pl.Series, stats: dict) -> np.ndarray:
    seconds = values.cast(pl.Int64)
    missing = seconds.is_null().to_numpy()
    moments = pl.from_epoch(seconds.fill_null(0), time_unit="s")
    year = moments.dt.year().to_numpy() + (moments.dt.ordinal_day().to_numpy() - 1) / 365.2425
    month = (moments.dt.month().to_numpy() - 1) / 12 * 2 * np.pi
    weekday = (moments.dt.weekday().to_numpy() - 1) / 7 * 2 * np.pi
    hour = (seconds.fill_null(0).to_numpy() % 86400) / 86400 * 2 * np.pi
    features = np.stack(
        [(year - stats["year_mean"]) / stats["year_std"], np.sin(month), np.cos(month), np.sin(weekday),
         np.cos(weekday), np.sin(hour), np.cos(hour), missing.astype(np.float64)],
        axis=1,
    )  # fmt: skip
    features[missing, :-1] = 0.0
    return features


# -- categories ----------------------------------------------------------------------------------------


def _fit_categories(values: pl.Series, options: EncoderOptions) -> dict:
    counts = values.drop_nulls().cast(pl.String).value_counts(sort=True)
    kept = counts.filter(pl.col("count") >= options.min_category_count).head(options.max_categories)
    vocabulary = kept.get_column(values.name).to_list() if kept.height else []
    return {"vocabulary": vocabulary, "cardinality": counts.height}


def _encode_categories(values: pl.Series, stats: dict) -> np.ndarray:
    """0 = null, 1 = a value outside the vocabulary (rare or unseen), 2.. = the vocabulary in order.

    Null and rare stay apart: for a near-unique column (e.g. a driver's code) presence is the signal."""
    vocabulary = stats["vocabulary"]
    mapping = pl.DataFrame(
        {"value": vocabulary, "code": np.arange(2, len(vocabulary) + 2, dtype=np.int32)},
        schema={"value": pl.String, "code": pl.Int32},
    )
    looked_up = pl.DataFrame({"value": values.cast(pl.String)}).join(mapping, on="value", how="left",
                                                                     maintain_order="left")  # fmt: skip
    code = looked_up.get_column("code").fill_null(pl.when(looked_up["value"].is_null()).then(0).otherwise(1))
    return code.to_numpy().astype(np.int32)


def _fit_tokens(values: pl.Series, separator: str, options: EncoderOptions) -> dict:
    tokens = (
        values.drop_nulls().cast(pl.String).str.split(separator).explode(empty_as_null=True).str.strip_chars()
    )
    tokens = tokens.filter(tokens.str.len_chars() > 0)
    top = tokens.value_counts(sort=True).head(options.max_tokens)
    return {"separator": separator, "tokens": top.get_column(tokens.name).to_list() if top.height else []}


def _encode_tokens(values: pl.Series, stats: dict, width: int) -> np.ndarray:
    out = np.zeros((len(values), width), np.float32)
    index = {token: position for position, token in enumerate(stats["tokens"])}
    for row, text in enumerate(values.cast(pl.String).to_list()):
        if text is None:
            continue
        for token in text.split(stats["separator"]):
            position = index.get(token.strip())
            if position is not None:
                out[row, position] = 1.0
    return out


# -- text ------------------------------------------------------------------------------------------------


def _encode_text(values: pl.Series, encoding: ColumnEncoding, embed_text) -> np.ndarray:
    texts = values.cast(pl.String).to_list()
    if encoding.stats["method"] == "model" and embed_text is not None:
        present = [index for index, text in enumerate(texts) if text]
        out = np.zeros((len(texts), encoding.width), np.float32)
        if present:
            out[present] = embed_text([texts[index] for index in present])
        return out
    return hash_text(texts, encoding.width)


def hash_text(texts: list[str | None], width: int) -> np.ndarray:
    """Signed feature hashing of lower-cased words, L2-normalised: a cheap, deterministic text encoder."""
    out = np.zeros((len(texts), width), np.float32)
    for row, text in enumerate(texts):
        if not text:
            continue
        for word in text.lower().split():
            code = zlib.crc32(word.encode())
            out[row, code % width] += 1.0 if (code >> 31) & 1 else -1.0
        norm = np.linalg.norm(out[row])
        if norm > 0:
            out[row] /= norm
    return out
