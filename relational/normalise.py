"""Normalisation of raw columns: null tokens to null, decimals to plain numbers, and every time to UTC int64
seconds since epoch."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

__all__ = [
    "ACCEPTED_TIME_FORMATS",
    "TimeParse",
    "clock_to_seconds",
    "date_and_clock_to_epoch_seconds",
    "decimals_to_numbers",
    "normalise_nulls",
    "to_epoch_seconds",
]

_NAIVE_FORMATS = (
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d",
    "%Y/%m/%d %H:%M:%S%.f",
    "%Y/%m/%d",
)
_ZONED_FORMATS = ("%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z")
# What error messages list: the formats above in words, and the other kinds of time columns.
ACCEPTED_TIME_FORMATS = (
    "text as YYYY-MM-DD, YYYY-MM-DD HH:MM[:SS[.ffffff]] (a space or T between), YYYY/MM/DD [HH:MM:SS], "
    "or with a zone, 2024-05-01T13:45:00Z / 2024-05-01 13:45:00+02:00; date or datetime columns; integer "
    "epochs (seconds, or ms, us, ns told by magnitude); a clock time (time_of_day) as HH:MM[:SS]"
)
# Integer epochs: the unit is told by magnitude (seconds until year 5138, then ms, us, ns).
_EPOCH_LIMITS = ((10**11, 1), (10**14, 1_000), (10**17, 1_000_000))


@dataclass(frozen=True)
class TimeParse:
    """Seconds since epoch (UTC) plus what could not be parsed, for checks and error messages."""

    seconds: pl.Series
    non_null: int
    failed: int
    failed_examples: list[tuple[int, str]]
    how: str

    @property
    def parse_rate(self) -> float:
        return 1.0 if self.non_null == 0 else (self.non_null - self.failed) / self.non_null


def decimals_to_numbers(frame: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, str]]:
    """DECIMAL columns (databases export NUMERIC/NUMBER as them) as the numbers they hold: whole-number ones
    (scale 0: ids, counts) as Int64, text when a value is beyond Int64; the rest as Float64. Returns the frame
    and, per converted column, what was done ("Decimal(10, 2) read as Float64")."""
    converted, notes = [], {}
    for name, dtype in frame.schema.items():
        if not isinstance(dtype, pl.Decimal):
            continue
        column = frame.get_column(name)
        if dtype.scale == 0:
            try:
                column = column.cast(pl.Int64, strict=True)
            except pl.exceptions.InvalidOperationError:  # a value beyond int64 (precision > 18)
                column = column.cast(pl.String)
        else:
            column = column.cast(pl.Float64)
        converted.append(column)
        notes[name] = f"Decimal({dtype.precision}, {dtype.scale}) read as {column.dtype}"
    return (frame.with_columns(converted) if converted else frame), notes


def normalise_nulls(frame: pl.DataFrame, null_values: list[str] | tuple[str, ...]) -> pl.DataFrame:
    """Strings equal to a null token (after trimming) and float NaN become null."""
    tokens = [token.strip() for token in null_values]
    expressions = []
    for name, dtype in frame.schema.items():
        column = pl.col(name)
        if dtype == pl.String:
            trimmed = column.str.strip_chars()
            expressions.append(pl.when(trimmed.is_in(tokens)).then(None).otherwise(column).alias(name))
        elif dtype.is_float():
            expressions.append(column.fill_nan(None).alias(name))
    return frame.with_columns(expressions) if expressions else frame


def to_epoch_seconds(series: pl.Series, timezone: str | None = None) -> TimeParse:
    """Convert dates, naive or zoned datetimes, ISO strings or integer epochs to UTC int64 seconds.

    Naive values are read in ``timezone`` (UTC when None). Values that cannot be parsed become null and
    are counted, so the caller decides whether that is an error.
    """
    dtype = series.dtype
    zone = timezone or "UTC"
    if dtype == pl.Date:
        seconds, how = _localise(series.cast(pl.Datetime("us")), zone), f"date at midnight {zone}"
    elif isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            seconds, how = _localise(series, zone), f"naive datetime read as {zone}"
        else:
            seconds, how = series.dt.epoch("s"), f"datetime in {dtype.time_zone}"
    elif dtype == pl.String:
        seconds, how = _parse_strings(series, zone), f"ISO 8601 text (naive read as {zone})"
    elif dtype.is_integer():
        seconds, how = _integer_epoch(series)
    elif dtype.is_float() and (series.drop_nulls() % 1 == 0).all():
        seconds, how = _integer_epoch(series.cast(pl.Int64))
    else:
        seconds, how = pl.Series(series.name, [None] * len(series), dtype=pl.Int64), f"{dtype} is not a time"
    seconds = seconds.cast(pl.Int64).alias(series.name)
    return _summarise(series, seconds, how)


def date_and_clock_to_epoch_seconds(
    date: pl.Series, clock: pl.Series, timezone: str | None = None
) -> TimeParse:
    """An event time split over a date column and a clock-time column; a null clock means midnight."""
    day = to_epoch_seconds(date, "UTC")
    clock_seconds = clock_to_seconds(clock)
    naive = pl.select(pl.from_epoch(day.seconds + clock_seconds.fill_null(0), time_unit="s")).to_series()
    seconds = _localise(naive, timezone or "UTC").alias(date.name)
    bad_clock = clock.is_not_null() & clock_seconds.is_null()
    seconds = pl.select(pl.when(bad_clock).then(None).otherwise(seconds)).to_series().alias(date.name)
    raw = pl.select(
        pl.when(bad_clock).then(clock.cast(pl.String)).otherwise(date.cast(pl.String))
    ).to_series()
    return _summarise(raw, seconds, f"{day.how.split(' at ')[0]} + clock time, read as {timezone or 'UTC'}")


def _localise(naive: pl.Series, zone: str) -> pl.Series:
    """Seconds since epoch of naive wall-clock datetimes read in ``zone`` (DST gaps become null)."""
    return naive.dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null").dt.epoch("s")


def _parse_strings(series: pl.Series, zone: str) -> pl.Series:
    text = series.str.strip_chars()
    attempts = [
        _localise(text.str.strptime(pl.Datetime("us"), fmt, strict=False), zone) for fmt in _NAIVE_FORMATS
    ]
    attempts += [
        text.str.strptime(pl.Datetime("us", "UTC"), fmt, strict=False).dt.epoch("s") for fmt in _ZONED_FORMATS
    ]
    return pl.select(pl.coalesce(attempts)).to_series()


def _integer_epoch(series: pl.Series) -> tuple[pl.Series, str]:
    largest = series.abs().max()
    largest = 0 if largest is None else int(largest)
    for limit, divisor in _EPOCH_LIMITS:
        if largest < limit:
            unit = {1: "seconds", 1_000: "milliseconds", 1_000_000: "microseconds"}[divisor]
            return series // divisor, f"integer epoch in {unit} (told by magnitude)"
    return series // 1_000_000_000, "integer epoch in nanoseconds (told by magnitude)"


def clock_to_seconds(series: pl.Series) -> pl.Series:
    """Clock times ``HH:MM[:SS[.fff]]`` to seconds after midnight; null stays null, bad text becomes null."""
    if series.dtype == pl.Time:
        return (series.cast(pl.Int64) // 1_000_000_000).alias(series.name)
    parts = (
        series.cast(pl.String)
        .str.strip_chars()
        .str.extract_groups(r"^(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?$")
    )
    hours = parts.struct.field("1").cast(pl.Int64)
    minutes = parts.struct.field("2").cast(pl.Int64)
    secs = parts.struct.field("3").cast(pl.Int64).fill_null(0)
    valid = (hours < 24) & (minutes < 60) & (secs < 61)
    total = hours * 3600 + minutes * 60 + secs
    return pl.select(pl.when(valid).then(total).otherwise(None)).to_series().alias(series.name)


def _summarise(raw: pl.Series, seconds: pl.Series, how: str, limit: int = 5) -> TimeParse:
    failed_mask = raw.is_not_null() & seconds.is_null()
    failed = int(failed_mask.sum())
    examples: list[tuple[int, str]] = []
    if failed:
        rows = failed_mask.arg_true().head(limit).to_list()
        examples = [(row, str(raw[row])) for row in rows]
    return TimeParse(seconds, int(raw.is_not_null().sum()), failed, examples, how)
