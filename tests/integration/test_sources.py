"""Reading raw sources: local files, globs, CSV and Parquet, S3 on a real endpoint, and clear failures."""

from __future__ import annotations

import io
import textwrap

import polars as pl
import pytest

from relational.errors import SourceError
from relational.sources import find_ragged_row, read_table_source
from relational.spec_loader import load_spec
from stores.object_store import ObjectStoreConnector


def spec_for(tmp_path, text):
    path = tmp_path / "graph.yaml"
    path.write_text(textwrap.dedent(text))
    return load_spec(path)


def test_glob_reads_every_file_in_order(tmp_path):
    (tmp_path / "parts").mkdir()
    for index in range(3):
        pl.DataFrame({"id": [index * 10, index * 10 + 1]}).write_parquet(
            tmp_path / "parts" / f"p{index}.parquet"
        )
    spec = spec_for(tmp_path, "tables:\n  t: {source: parts/*.parquet, primary_key: id}\n")
    assert read_table_source(spec, "t")["id"].to_list() == [0, 1, 10, 11, 20, 21]


def test_missing_file_and_empty_glob(tmp_path):
    spec = spec_for(tmp_path, "tables:\n  t: {source: nope.parquet}\n  u: {source: 'none/*.csv'}\n")
    with pytest.raises(SourceError, match=r"table 't': source file .*nope.parquet does not exist"):
        read_table_source(spec, "t")
    with pytest.raises(SourceError, match=r"table 'u': source pattern .*none/\*.csv matches no file"):
        read_table_source(spec, "u")


@pytest.mark.parametrize(
    "body, line, found",
    [
        ("a,b,c\n1,2,3\n4,5\n", 3, 2),
        ("a,b,c\n1,2,3\n4,5,6\n7,8,9,10\n", 4, 4),
        ('a,b\n"x,y",1\n2,3,4\n', 3, 3),
    ],
)
def test_ragged_csv_row_names_file_and_line(tmp_path, body, line, found):
    (tmp_path / "t.csv").write_text(body)
    assert find_ragged_row(str(tmp_path / "t.csv"))[0] == line
    spec = spec_for(tmp_path, "tables:\n  t: {source: t.csv}\n")
    with pytest.raises(SourceError, match=rf"t.csv, line {line}: has {found} fields but the header has"):
        read_table_source(spec, "t")


def test_tab_separated_and_gzipped_sources(tmp_path):
    """A .tsv is split on tabs (a comma inside a value stays in it), also gzipped; a .csv.gz is read too,
    and a ragged row of either is found on its line."""
    import gzip

    tsv = "id\tname\n1\tSmith, Jo\n2\tLee\n"
    (tmp_path / "t.tsv").write_text(tsv)
    (tmp_path / "g.tsv.gz").write_bytes(gzip.compress(tsv.encode()))
    (tmp_path / "c.csv.gz").write_bytes(gzip.compress(b'id,name\n1,"Smith, Jo"\n2,Lee\n'))
    (tmp_path / "r.tsv.gz").write_bytes(gzip.compress(b"id\tname\n1\tA\n2\tB\textra\n"))
    spec = spec_for(
        tmp_path,
        """\
        tables:
          t: {source: t.tsv, primary_key: id}
          g: {source: g.tsv.gz, primary_key: id}
          c: {source: c.csv.gz, primary_key: id}
          r: {source: r.tsv.gz, format: csv}
        """,
    )
    for table in ("t", "g", "c"):
        frame = read_table_source(spec, table)
        assert frame.columns == ["id", "name"] and frame["name"].to_list() == ["Smith, Jo", "Lee"], table
    assert find_ragged_row(str(tmp_path / "r.tsv.gz")) == (3, 2, 3)
    with pytest.raises(SourceError, match=r"r.tsv.gz, line 3: has 3 fields but the header has 2"):
        read_table_source(spec, "r")


def test_files_with_clashing_schemas(tmp_path):
    pl.DataFrame({"id": [1]}).write_parquet(tmp_path / "a.parquet")
    pl.DataFrame({"other": ["x"]}).write_parquet(tmp_path / "b.parquet")
    spec = spec_for(tmp_path, "tables:\n  t: {source: [a.parquet, b.parquet]}\n")
    with pytest.raises(SourceError, match="do not share one schema"):
        read_table_source(spec, "t")


def test_s3_parquet_and_csv_sources(tmp_path, s3_endpoint, s3_bucket):
    connector = ObjectStoreConnector(endpoint_url=s3_endpoint, region="us-east-1")
    client = connector.client()
    frame = pl.DataFrame({"id": [1, 2, 3], "name": ["a", "b", "c"]})
    client.put_object(Bucket=s3_bucket, Key="db/t.parquet", Body=_parquet(frame))
    client.put_object(Bucket=s3_bucket, Key="db/u.csv", Body=frame.write_csv().encode())
    spec = spec_for(
        tmp_path,
        f"""
        tables:
          t: {{source: 's3://{s3_bucket}/db/t.parquet', primary_key: id}}
          u: {{source: 's3://{s3_bucket}/db/u.csv', primary_key: id}}
          missing: {{source: 's3://{s3_bucket}/db/missing.parquet'}}
        """,
    )
    options = connector.storage_options()
    assert read_table_source(spec, "t", options).equals(frame)
    assert read_table_source(spec, "u", options).equals(frame)
    with pytest.raises(
        SourceError, match=rf"table 'missing': source s3://{s3_bucket}/db/missing.parquet does not exist"
    ):
        read_table_source(spec, "missing", options)


def _parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()
