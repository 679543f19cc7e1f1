"""The table `bench_predict.py` prints: per-path results, the comparison lines and the machine facts."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

__all__ = ["GIB", "Measured", "PathResult", "format_table", "machine_facts", "worst_ratio"]

GIB = 2**30


@dataclass
class PathResult:
    """One scoring pass in one process: rows scored, seconds, peak RSS, or why it could not run."""

    path: str
    rows: int = 0
    seconds: float = float("nan")
    peak_rss_gib: float = float("nan")
    import_rss_gib: float = float("nan")  # after importing torch, polars and the serving package
    base_rss_gib: float = float("nan")  # after opening the data and the model, before scoring
    load_seconds: float = float("nan")  # opening tables / stores / the model (not in ``seconds``)
    scores: str | None = None  # .npy of the scores, in row order
    error: str | None = None

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.error is None and self.seconds > 0 else float("nan")


@dataclass
class Measured:
    """One line of the table: a family on a graph, both paths on the same rows."""

    graph: str
    family: str
    rows: int
    serving: PathResult
    training: PathResult
    stores_bytes: int
    agreement: str = "not compared"

    @property
    def ratio(self) -> float:
        return self.serving.rate / self.training.rate


def _rate(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:,.0f}"


def _gib(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.2f} GiB"


def format_table(measured: list[Measured]) -> list[str]:
    """The result table, one line per (graph, family), then what could not run, as printable lines."""
    header = ["graph", "family", "rows", "serving rows/s", "train-eval rows/s", "ratio", "serving RSS",
              "train-eval RSS", "stores", "RSS <= stores+1GiB", "scores"]  # fmt: skip
    cells = []
    for line in measured:
        stores = line.stores_bytes / GIB
        fits = line.serving.peak_rss_gib <= stores + 1.0 if line.serving.error is None else None
        cells.append([line.graph, line.family, f"{line.rows:,}", _rate(line.serving.rate), _rate(line.training.rate),
                      "n/a" if not np.isfinite(line.ratio) else f"{line.ratio:.2f}x",
                      _gib(line.serving.peak_rss_gib), _gib(line.training.peak_rss_gib), f"{stores:.2f} GiB",
                      {True: "yes", False: "NO", None: "n/a"}[fits], line.agreement])  # fmt: skip
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in [header, *cells]]  # fmt: skip
    imports = [
        r.import_rss_gib for line in measured for r in (line.serving, line.training) if r.error is None
    ]
    if imports:
        lines.append(f"stores: graph + feature store on disk (+ published tables for gbdt); the interpreter with "
                     f"torch, polars and the serving package imported is {min(imports):.2f} GiB of every RSS")  # fmt: skip
    for line in measured:
        for result in (line.serving, line.training):
            if result.error:
                lines.append(f"{line.graph} {line.family} {result.path} could not run: {result.error}")
    return lines


def worst_ratio(measured: list[Measured]) -> str:
    """The last line: the lowest serving / training-eval ratio, and where."""
    rated = [line for line in measured if np.isfinite(line.ratio)]
    if not rated:
        return "worst ratio serving / training eval: n/a (no line had both paths)"
    worst = min(rated, key=lambda line: line.ratio)
    verdict = "meets" if worst.ratio >= 1.0 else "misses"
    return (f"worst ratio serving / training eval: {worst.ratio:.2f}x ({worst.graph} {worst.family}; "
            f"{verdict} the >= 1.0x goal)")  # fmt: skip


def machine_facts(threads: int | None) -> str:
    """Cores, library versions, the scoring threads and the load average, as one line."""
    import torch
    import torch_geometric

    load = os.getloadavg()
    used = threads or torch.get_num_threads()
    return (f"{os.cpu_count()} CPU cores, torch {torch.__version__} (scoring threads {used}), "
            f"torch_geometric {torch_geometric.__version__}, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}")  # fmt: skip
