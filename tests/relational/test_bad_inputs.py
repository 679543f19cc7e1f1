"""Bad inputs are refused with a message naming the file, table, column (or query) and the fix, and nothing is
written; a source outside the spec's folder is never quoted in a message."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from relational.errors import IngestError, KumoError, SourceError
from relational.graph_tables import ingest_in_memory
from relational.pql.errors import QueryError
from relational.pql.queries import bind_named_query, load_queries
from relational.schema import GraphSchema
from relational.spec_loader import load_spec
from stores.data_plane import DataPlane
from stores.tables import ingest_table, publish_table

SECRET = "TOPSECRET"


def write_spec(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "graph.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def files_under(root: Path) -> dict[str, int]:
    return {str(path.relative_to(root)): path.stat().st_size for path in root.rglob("*") if path.is_file()}


def refused(tmp_path: Path, spec_path: Path, table: str, error=KumoError) -> str:
    """Ingest and publish ``table`` as its Dagster asset does; return the message; assert nothing was written."""
    before = files_under(tmp_path)
    plane = DataPlane(root=str(tmp_path / "plane"))
    spec = load_spec(spec_path)
    with pytest.raises(error) as info:
        for name in spec.parents(table):
            publish_table(spec, ingest_table(spec, name, plane), plane)
        publish_table(spec, ingest_table(spec, table, plane), plane)
    written = {name: size for name, size in files_under(tmp_path).items() if name not in before}
    assert (
        not [name for name in written if not name.startswith("plane/")]
        and before.items() <= files_under(tmp_path).items()
    )
    assert not [name for name in written if f"/tables/{table}." in name]  # nothing of the refused table
    return str(info.value)


# -- 1. repeated column names -------------------------------------------------------------------------


def test_csv_with_a_repeated_column_name_is_refused(tmp_path):
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "orders.csv").write_text("id,amount,amount,note\n1,2,3,a\n2,4,5,b\n")
    spec = write_spec(tmp_path / "db", "tables:\n  orders: {source: orders.csv, primary_key: id}\n")
    message = refused(tmp_path, spec, "orders", SourceError)
    assert f"table 'orders': CSV file {tmp_path / 'db' / 'orders.csv'}" in message
    assert "repeats column name(s) ['amount']" in message and "rename or remove" in message
    assert "amount_duplicated" not in message


def test_parquet_with_a_repeated_column_name_is_refused(tmp_path):
    (tmp_path / "db").mkdir()
    table = pa.table([pa.array([1, 2]), pa.array([3, 4]), pa.array([5, 6])], names=["id", "score", "score"])
    pq.write_table(table, tmp_path / "db" / "scores.parquet")
    spec = write_spec(tmp_path / "db", "tables:\n  scores: {source: scores.parquet, primary_key: id}\n")
    message = refused(tmp_path, spec, "scores", SourceError)
    assert f"table 'scores': Parquet file {tmp_path / 'db' / 'scores.parquet'}" in message
    assert "repeats column name(s) ['score']" in message


# -- 2. integers beyond 64 bits -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["99999999999999999999999", "999999999999999999999999999999999999999999"])
def test_integer_beyond_64_bits_names_file_column_row_and_fix(tmp_path, value):
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "sales.csv").write_text(f"id,amount\n1,5\n2,{value}\n3,7\n")
    spec = write_spec(tmp_path / "db", "tables:\n  sales: {source: sales.csv, primary_key: id}\n")
    message = refused(tmp_path, spec, "sales", SourceError)
    assert f"table 'sales': CSV file {tmp_path / 'db' / 'sales.csv'}: column 'amount', data row 2" in message
    assert f"holds {value}, an integer beyond 64 bits" in message
    assert "`stypes: {amount: text}`" in message


def test_declaring_the_wide_column_text_reads_it_as_written(tmp_path):
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "sales.csv").write_text("id,code\n1,5\n2,99999999999999999999999\n")
    spec = write_spec(
        tmp_path / "db", "tables:\n  sales: {source: sales.csv, primary_key: id, stypes: {code: text}}\n"
    )
    built = ingest_in_memory(load_spec(spec))["sales"]
    assert built.frame["code"].to_list() == ["5", "99999999999999999999999"]


def test_a_wide_key_is_refused_then_read_as_text_when_declared_id(tmp_path):
    db = tmp_path / "db"
    db.mkdir()
    (db / "accounts.csv").write_text("account,balance\n99999999999999999999999,1.5\n42,2.5\n")
    (db / "payments.csv").write_text("payment,account\n1,42\n2,42\n3,7\n")
    text = """\
    tables:
      accounts: {{source: accounts.csv, primary_key: account{stypes}}}
      payments: {{source: payments.csv, primary_key: payment, foreign_keys: {{account: accounts}}}}
    """
    message = refused(tmp_path, write_spec(db, text.format(stypes="")), "accounts", SourceError)
    assert "column 'account', data row 1 holds 99999999999999999999999" in message
    assert "as it is a key, declare `stypes: {account: id}`" in message
    built = ingest_in_memory(load_spec(write_spec(db, text.format(stypes=", stypes: {account: id}"))))
    assert built["accounts"].frame["account"].to_list() == ["99999999999999999999999", "42"]
    # The integer foreign key matches the text key by its digits; 7 has no account and dangles.
    assert built["payments"].frame["_kumo_fk__account"].to_list() == [1, 1, None]


def test_a_value_unlike_the_first_10000_rows_names_column_row_and_value(tmp_path):
    (tmp_path / "db").mkdir()
    rows = "".join(f"{index},{index % 7}\n" for index in range(10_001))
    (tmp_path / "db" / "big.csv").write_text(f"id,level\n{rows}10001,high\n")
    spec = write_spec(tmp_path / "db", "tables:\n  big: {source: big.csv, primary_key: id}\n")
    message = refused(tmp_path, spec, "big", SourceError)
    assert "CSV file" in message and "column 'level', data row 10002 holds 'high'" in message
    assert "first 10,000 rows read as i64" in message and "`stypes: {level: text}`" in message


def test_parquet_unsigned_integer_beyond_signed_64_bits_is_refused(tmp_path):
    (tmp_path / "db").mkdir()
    column = pa.array([1, 2**63 + 7], type=pa.uint64())
    pq.write_table(pa.table({"id": [1, 2], "reading": column}), tmp_path / "db" / "meters.parquet")
    spec = write_spec(tmp_path / "db", "tables:\n  meters: {source: meters.parquet, primary_key: id}\n")
    message = refused(tmp_path, spec, "meters", SourceError)
    assert "Parquet file" in message and f"column 'reading', data row 2 holds {2**63 + 7}" in message


# -- 3. unparseable times -----------------------------------------------------------------------------


def test_unparseable_time_names_column_value_and_formats(tmp_path):
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "visits.csv").write_text("id,seen_at\n1,2024-01-02\n2,yesterday\n")
    spec = write_spec(
        tmp_path / "db", "tables:\n  visits: {source: visits.csv, primary_key: id, time_column: seen_at}\n"
    )
    message = refused(tmp_path, spec, "visits", IngestError)
    assert "table 'visits': `time_column` 'seen_at': 1 of 2 value(s) cannot be parsed" in message
    assert "data row 2: 'yesterday'" in message
    assert "YYYY-MM-DD" in message and "integer epochs" in message


def test_unparseable_clock_time_names_both_columns(tmp_path):
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "races.csv").write_text("id,day,clock\n1,2024-01-02,14:00\n2,2024-01-03,teatime\n")
    spec = write_spec(
        tmp_path / "db",
        "tables:\n  races: {source: races.csv, primary_key: id, time_column: {date: day, time_of_day: clock}}\n",
    )
    message = refused(tmp_path, spec, "races", IngestError)
    assert "`time_column` {date: day, time_of_day: clock}" in message and "'teatime'" in message
    assert "HH:MM[:SS]" in message


# -- 4. queries that do not parse or bind ---------------------------------------------------------------


def test_query_that_does_not_parse_names_file_line_and_query(tmp_path):
    path = tmp_path / "queries.yaml"
    path.write_text(
        "good: PREDICT COUNT(orders.*, 0, 7, days) FOR EACH users.user_id\n"
        "broken:\n"
        "  description: a typo\n"
        "  query: PREDICT COUNT(orders.*, 0, 7, days) FOR EVERY users.user_id\n"
    )
    with pytest.raises(QueryError) as info:
        load_queries(path)
    message = str(info.value)
    place = f"{path}, line 4: query 'broken': "
    assert message.startswith(place)
    assert message.index(place) < message.index("^")  # the place comes before the caret block


def test_query_that_does_not_bind_names_file_line_and_query(tmp_path, fake_spec):
    built = ingest_in_memory(fake_spec)
    schema = GraphSchema.from_built_tables(fake_spec, built)
    path = tmp_path / "queries.yaml"
    path.write_text("ok: PREDICT COUNT(orders.*, 0, 7, days) FOR EACH users.user_id\n"
                    "typo: PREDICT SUM(orders.amout, 0, 7, days) FOR EACH users.user_id\n")  # fmt: skip
    queries = load_queries(path)
    assert bind_named_query(queries["ok"], schema).task_type == "regression"
    with pytest.raises(QueryError) as info:
        bind_named_query(queries["typo"], schema)
    message = str(info.value)
    assert message.startswith(f"{path}, line 2: query 'typo': unknown column of orders 'amout'")
    assert "^" in message.splitlines()[-1]


# -- 5. sources outside the spec's folder are never quoted ------------------------------------------------


@pytest.fixture
def outside(tmp_path) -> Path:
    """A secret-looking CSV outside the spec's folder: its header and values must never reach a message."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "secret.csv").write_text(
        f"{SECRET}_user,{SECRET}_hash,{SECRET}_when\n"
        f"alice,{SECRET}-hunter2,2024-01-01\n"
        f"alice,{SECRET}-swordfish,{SECRET}-not-a-date\n"
    )
    (folder / "wide.csv").write_text(f"{SECRET}_user,{SECRET}_n\nalice,99999999999999999999999\n")
    return folder / "secret.csv"


def spec_on(tmp_path: Path, table: str) -> Path:
    return write_spec(tmp_path / "spec", f"tables:\n  leak: {table}\n")


@pytest.mark.parametrize(
    "table, expected",
    [
        ("{source: ../elsewhere/secret.csv, primary_key: id}", "it has 3 column(s)"),
        (f"{{source: ../elsewhere/secret.csv, primary_key: {SECRET}_user}}", "2 row(s) repeat a key"),
        (f"{{source: ../elsewhere/secret.csv, time_column: {SECRET}_when}}", "at data row(s) 2"),
        ("{source: ../elsewhere/wide.csv}", "column number 2 holds an integer beyond 64 bits"),
    ],
)  # fmt: skip
def test_a_source_outside_the_spec_folder_is_never_quoted(tmp_path, outside, table, expected, monkeypatch):
    monkeypatch.delenv("KUMO_SHARED_DATA", raising=False)
    message = refused(tmp_path, spec_on(tmp_path, table), "leak")
    assert expected in message and "not shown: the source lies outside the folder of graph.yaml" in message
    assert "hunter2" not in message and "swordfish" not in message and "alice" not in message
    assert message.count(SECRET) == table.count(SECRET)  # only the names graph.yaml itself wrote


def test_repeated_names_of_an_outside_file_are_counted_not_named(tmp_path, monkeypatch):
    monkeypatch.delenv("KUMO_SHARED_DATA", raising=False)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "dup.csv").write_text(f"{SECRET},{SECRET}\n1,2\n")
    message = refused(tmp_path, spec_on(tmp_path, "{source: ../elsewhere/dup.csv}"), "leak", SourceError)
    assert SECRET not in message and "1 repeated column name(s) not shown" in message


def test_a_symlink_in_the_spec_folder_to_an_outside_file_is_outside(tmp_path, outside, monkeypatch):
    monkeypatch.delenv("KUMO_SHARED_DATA", raising=False)
    spec = spec_on(tmp_path, "{source: inside.csv, primary_key: id}")
    (tmp_path / "spec" / "inside.csv").symlink_to(outside)
    message = refused(tmp_path, spec, "leak", IngestError)
    assert SECRET not in message and "it has 3 column(s)" in message


def test_the_shared_data_root_and_the_spec_folder_are_trusted(tmp_path, outside, monkeypatch):
    monkeypatch.setenv("KUMO_SHARED_DATA", str(outside.parent))
    message = refused(
        tmp_path, spec_on(tmp_path, "{source: '${KUMO_SHARED_DATA}/secret.csv', primary_key: id}"), "leak"
    )
    assert f"did you mean '{SECRET}_hash'" in message or f"known: {SECRET}_hash" in message
    monkeypatch.delenv("KUMO_SHARED_DATA")
    (tmp_path / "spec" / "own.csv").write_text("user_id,name\n1,x\n")
    message = refused(tmp_path, spec_on(tmp_path, "{source: ../spec/./own.csv, primary_key: id}"), "leak")
    assert "known: name, user_id" in message  # `..` that resolves back inside the folder is inside


def test_bind_errors_do_not_list_columns_of_an_outside_source(tmp_path, outside, monkeypatch):
    monkeypatch.delenv("KUMO_SHARED_DATA", raising=False)
    spec_path = write_spec(
        tmp_path / "spec",
        f"""\
        tables:
          users: {{source: users.csv, primary_key: user_id}}
          leak: {{source: ../elsewhere/secret.csv, time_column: {SECRET}_when, foreign_keys: {{user_id: users}}}}
        """,
    )
    outside.write_text(f"user_id,{SECRET}_hash,{SECRET}_when\n1,{SECRET}-a,2024-01-01\n")
    (tmp_path / "spec" / "users.csv").write_text("user_id,age\n1,30\n")
    spec = load_spec(spec_path)
    built = ingest_in_memory(spec)
    schema = GraphSchema.from_built_tables(spec, built)
    (tmp_path / "spec" / "queries.yaml").write_text(
        f"q: PREDICT SUM(leak.{SECRET}_hsh, 0, 7, days) FOR EACH users.user_id\n"
    )
    (query,) = load_queries(tmp_path / "spec" / "queries.yaml").values()
    with pytest.raises(QueryError) as info:
        bind_named_query(query, schema, hidden_columns={f"{SECRET}_hash"})
    message = str(info.value)
    assert f"{SECRET}_hash" not in message and "the known names not shown" in message
    assert message.startswith(
        f"{tmp_path / 'spec' / 'queries.yaml'}, line 1: query 'q': unknown column of leak"
    )
    with pytest.raises(QueryError, match=f"did you mean '{SECRET}_hash'"):  # the same query, trusted
        bind_named_query(query, schema)
