"""Live study progress in the UI: while a slot's trials run, each epoch and each finished trial becomes an
asset observation of the study, so its Plots tab draws validation metric and loss as they come in.

A background thread polls the study's storage (`training.progress.ProgressReader`) every few seconds; the
slot's own thread is busy waiting for its trial process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import optuna

from kumo_assets.hpo_report import leaderboard_table
from kumo_assets.ui_tables import readable
from training.hpo import leaderboard
from training.progress import EpochReport, ProgressReader, TrialFinished

__all__ = ["observation", "reporting_progress"]

POLL_SECONDS = 3.0


def observation(key: dg.AssetKey, report: EpochReport | TrialFinished, metric: str) -> dg.AssetObservation:
    """One report as an observation: floats plot over time; trial and epoch are labels, not series."""
    if isinstance(report, EpochReport):
        metadata = {"progress": dg.MetadataValue.text(f"trial {report.trial} ({report.family}), epoch {report.epoch}"),
                    f"epoch_val_{metric}": dg.MetadataValue.float(readable(report.value))}  # fmt: skip
        if report.loss is not None:
            metadata["epoch_train_loss"] = dg.MetadataValue.float(readable(report.loss))
        return dg.AssetObservation(asset_key=key, metadata=metadata)
    value = "" if report.value is None else f": {metric} {report.value:.4f}"
    metadata = {"progress": dg.MetadataValue.text(f"trial {report.trial} ({report.family}) {report.state}{value}"),
                "finished_trials": dg.MetadataValue.int(report.finished_trials)}  # fmt: skip
    if report.best_value is not None:
        metadata[f"best_val_{metric}"] = dg.MetadataValue.float(readable(report.best_value))
    return dg.AssetObservation(asset_key=key, metadata=metadata)


@contextmanager
def reporting_progress(context: dg.OpExecutionContext, key: dg.AssetKey, study: optuna.Study, slot_key: str,
                       metric: str) -> Iterator[None]:  # fmt: skip
    """Log the slot's progress as observations of ``key`` until the block ends (then once more)."""
    reader, stop = ProgressReader(study, slot_key), threading.Event()

    def flush() -> None:
        for report in reader.poll():
            event = observation(key, report, metric)
            if isinstance(report, TrialFinished):  # the leaderboard as it stands after this trial
                board = {"leaderboard": leaderboard_table(leaderboard(study), metric)}
                event = dg.AssetObservation(asset_key=key, metadata={**event.metadata, **board})
            context.log_event(event)

    def loop() -> None:
        while not stop.wait(POLL_SECONDS):
            try:
                flush()
            except Exception as error:
                context.log.warning(f"live progress skipped a poll: {error}")

    thread = threading.Thread(target=loop, name="study-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        flush()
