"""`kumo validate`: the shipped examples pass, and a broken spec, table or query exits non-zero naming the place.

In process through `cli.main.main` (fast), plus one run of the installed `kumo` console script.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import polars as pl
import pytest

from cli.main import main
from stores.object_store import ObjectStoreConnector
from tests.conftest import F1_SPEC, REPO_ROOT, SHARED_DATA
from tests.support.fake_db import make_tables, write_fake_db
from tests.support.servers import venv_tool

pytestmark = pytest.mark.integration
EXAMPLES = REPO_ROOT / "kumo_assets" / "examples"
QUERIES = """\
spend: PREDICT SUM(orders.amount, 0, 30, days) FOR EACH users.user_id
buys:
  description: will the user order in the next 30 days?
  query: PREDICT COUNT(orders.*, 0, 30, days) > 0 FOR EACH users.user_id
"""


def files_under(root: Path) -> dict[str, float]:
    return {str(path): path.stat().st_mtime for path in root.rglob("*") if path.is_file()}


def validate(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["validate", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_lines(out: str) -> dict[str, str]:
    return {line.split()[1]: line for line in out.splitlines() if line.startswith("  table ")}


def query_lines(out: str) -> dict[str, str]:
    return {line.split()[1]: line for line in out.splitlines() if line.startswith("  query ")}


def test_f1_passes_and_nothing_is_written(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = files_under(EXAMPLES / "f1")
    code, out, err = validate(capsys, "--spec", str(F1_SPEC))
    assert code == 0, err
    tables = table_lines(out)
    assert set(tables) == {"circuits", "drivers", "constructors", "races", "results", "driver_standings",
                           "constructor_results", "constructor_standings", "qualifying"}  # fmt: skip
    assert all(line.endswith("OK") for line in tables.values())
    assert re.search(r"results\s+27,118 rows\s+14 columns\s+time from races", tables["results"])
    assert "time date + time" in tables["races"] and "no time" in tables["circuits"]
    queries = query_lines(out)
    assert list(queries) == ["driver_dnf", "driver_top3", "driver_position"]
    assert "binary_classification" in queries["driver_dnf"] and "regression" in queries["driver_position"]
    assert files_under(EXAMPLES / "f1") == before and not files_under(tmp_path)


@pytest.mark.parametrize(
    "name, queries",
    [("completejourney", {"churn": "binary_classification", "spend": "regression"}),
     ("nycflights13", {"late_departure": "binary_classification", "arrival_delay": "regression"})],
)  # fmt: skip
def test_the_shared_examples_pass(capsys, monkeypatch, name, queries):
    if not (SHARED_DATA / name).is_dir():
        pytest.skip(
            f"{SHARED_DATA / name} is not on this machine"
        )  # as tests/integration/test_other_databases.py
    monkeypatch.setenv("KUMO_SHARED_DATA", str(SHARED_DATA))
    code, out, err = validate(capsys, "--spec", str(EXAMPLES / name / "graph.yaml"))
    assert code == 0, err
    assert all(" OK" in line for line in table_lines(out).values())
    for query, task_type in queries.items():
        assert task_type in query_lines(out)[query]
    if name == "nycflights13":  # known dirt is reported but does not block
        assert "warning (foreign_key_tailnum): 50094 row(s)" in out


def test_a_shared_example_without_its_data_root_names_the_variable(capsys, monkeypatch):
    monkeypatch.delenv("KUMO_SHARED_DATA", raising=False)
    code, out, err = validate(capsys, "--spec", str(EXAMPLES / "nycflights13" / "graph.yaml"))
    assert code == 1 and "table airlines: problem" in out
    assert "KUMO_SHARED_DATA" in err and "not set" in err


def test_warnings_do_not_fail_and_no_queries_file_is_fine(capsys, tmp_path):
    code, out, err = validate(capsys, "--spec", str(write_fake_db(tmp_path / "db", "csv")))
    assert code == 0, err
    assert re.search(r"table orders\s+299 rows .* time created_at\s+OK \(1 warning\(s\)\)", out)
    assert "warning (foreign_key_user_id): 1 row(s) of 'orders'" in out
    assert re.search(
        r"table stores\s+3 rows\s+1 columns\s+implied by its foreign keys\s+OK$", out, re.MULTILINE
    )
    assert out.rstrip().endswith("no queries.yaml beside the spec, so no query was checked")


def test_a_spec_mistake_names_file_and_line(capsys, tmp_path):
    spec = write_fake_db(tmp_path / "db")
    spec.write_text(spec.read_text().replace("primary_key: user_id", "primary_kee: user_id"))
    code, out, err = validate(capsys, "--spec", str(spec))
    assert code == 1 and "graph spec" in out
    assert f"{spec}, line 4: tables.users.primary_kee: unknown key 'primary_kee'" in err


def test_a_bad_table_stops_at_that_table_and_writes_nothing(capsys, tmp_path):
    tables = make_tables()
    tables["orders"] = pl.concat([tables["orders"], tables["orders"].head(1)])
    spec = write_fake_db(tmp_path / "db", "csv", tables=tables)
    (spec.parent / "queries.yaml").write_text(QUERIES)
    before = files_under(tmp_path)
    code, out, err = validate(capsys, "--spec", str(spec))
    assert code == 1
    assert "table users" in out and "table orders: problem" in out and "query" not in out
    assert "table 'orders': primary key ['order_id'] must be unique" in err and "{'order_id': 100}" in err
    assert files_under(tmp_path) == before


def test_a_bad_query_names_the_queries_file_line_and_query(capsys, tmp_path):
    spec = write_fake_db(tmp_path / "db")
    queries = spec.parent / "queries.yaml"
    queries.write_text(QUERIES + "late: PREDICT COUNT(orders.*, 0, 30, days) > 0 FOR EACH users.usr_id\n")
    code, out, err = validate(capsys, "--spec", str(spec))
    assert code == 1 and "query late: problem" in out
    assert re.search(r"query spend\s+regression\s+OK", out) and re.search(
        r"query buys\s+binary_classification", out
    )
    assert err.startswith(f"kumo validate: {queries}, line 5: query 'late': unknown column of users 'usr_id'")
    assert "did you mean 'user_id'" in err and err.rstrip().endswith(")") and "^" in err

    other = tmp_path / "other.yaml"  # --queries, and a syntax error: caught when the file is read
    other.write_text("typo:\n  query: PREDICT COUNT(orders.*, 0, 30, days) FOR EACH users.user_id WHERE\n")
    code, out, err = validate(capsys, "--spec", str(spec), "--queries", str(other))
    assert code == 1 and "table users" in out and f"queries {other}: problem" in out
    assert err.startswith(f"kumo validate: {other}, line 2: query 'typo': ")


def test_queries_against_an_outside_source_do_not_list_its_columns(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("KUMO_SHARED_DATA", raising=False)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret.csv").write_text("id,TOPSECRET_salary\n1,100\n2,200\n")
    spec = tmp_path / "spec" / "graph.yaml"
    spec.parent.mkdir()
    spec.write_text("tables:\n  people: {source: ../elsewhere/secret.csv, primary_key: id}\n")
    (spec.parent / "queries.yaml").write_text("q: PREDICT people.TOPSECRET_salry FOR EACH people.id\n")
    code, out, err = validate(capsys, "--spec", str(spec))
    assert code == 1 and "table people" in out and "2 rows" in out and "query q: problem" in out
    assert "TOPSECRET_salary" not in out + err and "the known names not shown" in err


def test_a_remote_csv_with_a_repeated_column_is_refused(
    capsys, tmp_path, s3_endpoint, s3_bucket, monkeypatch
):
    client = ObjectStoreConnector(endpoint_url=s3_endpoint, region="us-east-1").client()
    client.put_object(Bucket=s3_bucket, Key="db/t.csv", Body=b"id,score,score\n1,2,3\n")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    spec = tmp_path / "graph.yaml"
    spec.write_text(f"tables:\n  t: {{source: 's3://{s3_bucket}/db/t.csv', primary_key: id}}\n")
    code, _, err = validate(capsys, "--spec", str(spec))
    assert code == 1
    assert (
        f"table 't': CSV file s3://{s3_bucket}/db/t.csv: the header repeats column name(s) ['score']" in err
    )


def test_the_kumo_console_script_exits_non_zero_naming_the_place(tmp_path):
    spec = write_fake_db(tmp_path / "db", "csv")
    orders = spec.parent / "orders.csv"
    lines = orders.read_text().splitlines()
    lines[3] = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "someday", lines[3])
    orders.write_text("\n".join(lines) + "\n")
    completed = subprocess.run(
        [venv_tool("kumo"), "validate", "--spec", str(spec)], capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 1, completed.stderr
    assert "table orders: problem" in completed.stdout
    assert "table 'orders': `time_column` 'created_at': 1 of " in completed.stderr
    assert "data row 3: 'someday'" in completed.stderr
