"""Graph spec loading: the valid forms load, and every mistake names the file, line and fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relational.errors import SpecError
from relational.spec import ForeignKey, parse_offset
from relational.spec_loader import load_spec
from tests.conftest import F1_SPEC


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "graph.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def spec_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, text))
    return str(info.value)


def test_minimal_spec_from_design_loads(tmp_path):
    spec = load_spec(
        write(
            tmp_path,
            """
            tables:
              users:  {source: users.parquet, primary_key: user_id, stypes: {country: categorical}}
              orders: {source: orders/*.parquet, primary_key: order_id, time_column: created_at,
                       foreign_keys: {user_id: users}}
            """,
        )
    )
    assert spec.graph_name == tmp_path.name.replace("-", "_")
    assert spec.foreign_keys("orders") == [ForeignKey("user_id", ("user_id",), "users")]
    assert spec.parents("orders") == ["users"]
    assert spec.resolve_source("users.parquet") == str(tmp_path / "users.parquet")
    assert spec.source_format("orders") == "parquet"


def test_f1_spec_covers_relbench_tables():
    spec = load_spec(F1_SPEC)
    relbench = {
        "races", "circuits", "drivers", "results", "driver_standings", "constructors",
        "constructor_results", "constructor_standings", "qualifying",
    }  # fmt: skip
    assert relbench <= set(spec.tables)
    assert spec.tables["qualifying"].time_from.offset_seconds == -86400
    assert spec.tables["results"].time_from.foreign_key == "raceId"


def test_unknown_key_names_line_and_suggests(tmp_path):
    message = spec_error(
        tmp_path,
        """
        tables:
          users:
            source: users.parquet
            primary_kye: user_id
        """,
    )
    assert "line 5" in message
    assert "unknown key 'primary_kye'" in message
    assert "did you mean 'primary_key'" in message
    assert str(tmp_path / "graph.yaml") in message


def test_unknown_top_level_key(tmp_path):
    message = spec_error(tmp_path, "tables:\n  a: {source: a.csv}\nversion: 2\n")
    assert "line 3" in message and "unknown key 'version'" in message


def test_bad_stype_lists_the_valid_ones(tmp_path):
    message = spec_error(tmp_path, "tables:\n  a:\n    source: a.csv\n    stypes: {x: number}\n")
    assert "line 4" in message
    assert "'numerical'" in message and "'categorical'" in message


# Each broken spec and the fragments its error must contain (the line to fix, the rule, the fix).
SPEC_ERRORS = [
    pytest.param(
        """
        tables:
          users: {source: u.csv, primary_key: id}
          orders:
            source: o.csv
            foreign_keys:
              user_id: user
        """,
        ["line 7", "unknown table 'user'", "did you mean 'users'"],
        id="foreign_key_to_unknown_table",
    ),
    pytest.param(
        """
        tables:
          users: {source: u.csv, primary_key: id}
          orders: {source: o.csv, foreign_keys: {email: users.email}}
        """,
        ["line 4", "primary key of 'users'"],
        id="foreign_key_must_reference_the_primary_key",
    ),
    pytest.param(
        """
        tables:
          events: {source: e.csv}
          other: {source: o.csv, foreign_keys: {event_id: events}}
        """,
        ["has no primary_key"],
        id="foreign_key_to_table_without_key",
    ),
    pytest.param(
        """
        tables:
          weather: {source: w.csv, primary_key: [origin, hour]}
          flights:
            source: f.csv
            foreign_keys:
              weather_hour: {table: weather, columns: [origin]}
        """,
        ["line 7", "1 column(s)", "['origin', 'hour']"],
        id="composite_key_arity_must_match",
    ),
    pytest.param(
        """
        tables:
          races: {source: r.csv, primary_key: raceId, time_column: date}
          results:
            source: x.csv
            foreign_keys: {raceId: races}
            time_from: {foreign_key: race_id}
        """,
        ["line 7", "did you mean 'raceId'"],
        id="time_from_must_name_a_foreign_key",
    ),
    pytest.param(
        """
        tables:
          races: {source: r.csv, primary_key: raceId}
          results: {source: x.csv, foreign_keys: {raceId: races}, time_from: {foreign_key: raceId}}
        """,
        ["no time to inherit"],
        id="time_from_parent_needs_a_time",
    ),
    pytest.param(
        """
        tables:
          races: {source: r.csv, primary_key: raceId, time_column: d}
          results: {source: x.csv, time_column: t, foreign_keys: {raceId: races}, time_from: {foreign_key: raceId}}
        """,
        ["either `time_column` or `time_from`"],
        id="time_column_and_time_from_exclusive",
    ),
    pytest.param(
        """
        tables:
          races: {source: r.csv, primary_key: raceId, time_column: d}
          results:
            source: x.csv
            foreign_keys: {raceId: races}
            time_from: {foreign_key: raceId, offset: -1 month}
        """,
        ["line 7", "months and years have no fixed length"],
        id="bad_offset",
    ),
    pytest.param(
        """
        tables:
          users: {source: u.csv, primary_key: id, stypes: {id: numerical}}
        """,
        ["keys are never features"],
        id="key_columns_cannot_be_features",
    ),
    pytest.param(
        """
        tables:
          stores: {implied: true, primary_key: store_id, source: s.csv}
          lonely: {implied: true, primary_key: id}
          sales: {source: s.csv, foreign_keys: {store_id: stores}}
        """,
        ["`source` cannot be set", "no foreign key points at this implied table"],
        id="implied_table_rules",
    ),
    pytest.param(
        """
        tables:
          a: {source: a.csv, primary_key: id, foreign_keys: {b_id: b}}
          b: {source: b.csv, primary_key: id, foreign_keys: {a_id: a}}
        """,
        ["cycle", "a -> b -> a"],
        id="foreign_key_cycle_is_reported",
    ),
]


@pytest.mark.parametrize(("text", "fragments"), SPEC_ERRORS)
def test_a_broken_spec_names_the_line_the_rule_and_the_fix(tmp_path, text, fragments):
    message = spec_error(tmp_path, textwrap.dedent(text))
    assert all(fragment in message for fragment in fragments), (fragments, message)


def test_self_reference_is_not_a_cycle(tmp_path):
    spec = load_spec(
        write(tmp_path, "tables:\n  e: {source: e.csv, primary_key: id, foreign_keys: {boss: e}}\n")
    )
    assert spec.parents("e") == []


def test_duplicate_yaml_key_and_missing_file(tmp_path):
    assert "appears twice" in spec_error(tmp_path, "tables:\n  a: {source: a.csv}\n  a: {source: b.csv}\n")
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")


def test_unknown_extension_asks_for_format(tmp_path):
    assert "add `format: parquet`" in spec_error(tmp_path, "tables:\n  a: {source: a.dat}\n")
    load_spec(write(tmp_path, "tables:\n  a: {source: a.dat, format: csv}\n"))


def test_environment_variables_in_sources(tmp_path, monkeypatch):
    spec = load_spec(write(tmp_path, "tables:\n  a: {source: 's3://${BUCKET}/a.parquet'}\n"))
    monkeypatch.setenv("BUCKET", "my-bucket")
    assert spec.resolve_source(spec.tables["a"].source) == "s3://my-bucket/a.parquet"
    monkeypatch.delenv("BUCKET")
    with pytest.raises(SpecError, match="BUCKET"):
        spec.resolve_source(spec.tables["a"].source)


@given(
    st.integers(min_value=-10_000, max_value=10_000),
    st.sampled_from([("s", 1), ("min", 60), ("hours", 3600), ("d", 86400), ("weeks", 604800)]),
    st.sampled_from(["", " "]),
)
def test_offset_round_trip(amount, unit, space):
    name, seconds = unit
    assert parse_offset(f"{amount}{space}{name}") == amount * seconds
