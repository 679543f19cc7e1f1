"""RelBench's own F1 database and tasks, run on the shipped F1 files (the reference for parity tests).

RelBench 2.x downloads its raw zip; here its `make_db` is replaced by one that reads our Parquet copy and
applies the processing RelBench documents for F1: race time = date + time (missing time = midnight),
race-level tables take the race's time, qualifying one day earlier. Labels and anchors are then made by
RelBench's own task code (`relbench.tasks.f1`, `relbench.base.task_base`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from relbench.base import Database, Table
from relbench.datasets.f1 import F1Dataset

RACE_TABLES = ["results", "driver_standings", "constructor_results", "constructor_standings", "qualifying"]
KEYS = {
    "races": ("raceId", {"circuitId": "circuits"}),
    "circuits": ("circuitId", {}),
    "drivers": ("driverId", {}),
    "constructors": ("constructorId", {}),
    "results": ("resultId", {"raceId": "races", "driverId": "drivers", "constructorId": "constructors"}),
    "driver_standings": ("driverStandingsId", {"raceId": "races", "driverId": "drivers"}),
    "constructor_results": ("constructorResultsId", {"raceId": "races", "constructorId": "constructors"}),
    "constructor_standings": ("constructorStandingsId", {"raceId": "races", "constructorId": "constructors"}),
    "qualifying": ("qualifyId", {"raceId": "races", "driverId": "drivers", "constructorId": "constructors"}),
}


def read_f1_frames(folder: Path) -> dict[str, pd.DataFrame]:
    frames = {name: pd.read_parquet(folder / f"{name}.parquet") for name in KEYS}
    races = frames["races"]
    clock = races["time"].fillna("00:00:00")
    races["date"] = pd.to_datetime(races["date"].astype(str) + " " + clock)
    for name in RACE_TABLES:
        frames[name] = frames[name].merge(races[["raceId", "date"]], on="raceId", how="left")
    frames["qualifying"]["date"] = frames["qualifying"]["date"] - pd.Timedelta(days=1)
    return frames


class LocalF1Dataset(F1Dataset):
    """RelBench's F1 dataset whose raw tables come from a local folder instead of a download."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        super().__init__(cache_dir=None)

    def make_db(self) -> Database:
        frames = read_f1_frames(self.folder)
        return Database(
            {
                name: Table(
                    df=frames[name],
                    fkey_col_to_pkey_table=foreign_keys,
                    pkey_col=key,
                    time_col="date" if "date" in frames[name] and name != "drivers" else None,
                )
                for name, (key, foreign_keys) in KEYS.items()
            }
        )


def relbench_table(task, split: str, driver_ids: list[int]) -> pd.DataFrame:
    """A RelBench task table with the original driver ids and anchor times as UTC epoch seconds."""
    df = task.get_table(split, mask_input_cols=False).df.copy()
    df["driverId"] = [driver_ids[int(index)] for index in df["driverId"]]
    df["date"] = pd.to_datetime(df["date"]).astype("datetime64[s]").astype("int64")
    return df
