"""Ingest end to end on S3 (a real moto_server endpoint): sources and data plane in a bucket."""

from __future__ import annotations

import io

from dagster import instance_for_test, materialize

from kumo_assets.definitions import build_definitions
from stores.data_plane import DataPlane
from tests.support.fake_db import SPEC, make_tables

SECRET = "do-not-log-this-secret-7f3a"


def test_fake_db_from_s3_into_an_s3_data_plane(tmp_path, s3_endpoint, s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    plane = DataPlane(root=f"s3://{s3_bucket}/plane")
    client = plane.object_store.client()
    for name, frame in make_tables().items():
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        client.put_object(Bucket=s3_bucket, Key=f"raw/{name}.parquet", Body=buffer.getvalue())
    spec_path = tmp_path / "shop" / "graph.yaml"
    spec_path.parent.mkdir()
    spec_path.write_text(SPEC.format(ext="parquet").replace("source: ", f"source: s3://{s3_bucket}/raw/"))

    defs = build_definitions([spec_path], f"s3://{s3_bucket}/plane", str(tmp_path / "graph_stores"))
    assets = list(defs.assets)
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = materialize(assets, resources=defs.resources, instance=instance)
        assert result.success
        logged = [
            str(record.event_log_entry) for record in instance.get_records_for_run(result.run_id).records
        ]
    assert not any(SECRET in entry for entry in logged)
    orders = plane.get_frame("shop", "tables", "orders.parquet")
    assert orders.height == make_tables()["orders"].height - 1
    listed = client.list_objects_v2(Bucket=s3_bucket, Prefix="plane/shop/tables/")["Contents"]
    assert {item["Key"].rsplit("/", 1)[1] for item in listed} >= {
        "orders.parquet",
        "orders.json",
        "stores.json",
    }
