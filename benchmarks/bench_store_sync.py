"""What a trial on another machine pays to get F1's stores: publish to S3, cold fetch, warm fetch.

A Kubernetes trial fetches the pinned graph and feature store versions from the data plane into its node
cache before memory-mapping them (`stores.store_sync`). This measures that against the same data
copied between local folders (the baseline: what the bytes cost without S3 in between), on a real S3
endpoint (moto_server on 127.0.0.1, so the network is loopback: a lower bound for a real bucket).

    .venv/bin/python benchmarks/bench_store_sync.py --repeats 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from f1_setup import f1_setup  # the benchmarks folder is on sys.path

from stores.data_plane import DataPlane
from stores.object_store import ObjectStoreConnector
from stores.store_sync import fetch_version, publish_version
from tests.support.servers import free_port, port_open, running_server, venv_tool


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    setup = f1_setup(["driver_dnf"])
    versions = [setup.graph.path, setup.features.path]  # <root>/<kind>/<version>
    size = sum(folder_bytes(folder) for folder in versions)
    port = free_port()
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"})  # fmt: skip

    def fetch_all(plane: DataPlane, node: Path) -> None:
        for folder in versions:
            fetch_version(plane, node / "f1" / folder.parent.name, "f1", folder.name)

    with running_server([venv_tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)], port_open(port)):
        ObjectStoreConnector().client().create_bucket(Bucket="bench")
        plane = DataPlane(root="s3://bench/plane")
        publish = timed(lambda: [publish_version(plane, folder, "f1") for folder in versions])
        republish = timed(lambda: [publish_version(plane, folder, "f1") for folder in versions])
        cold, warm, copy = [], [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as node:
                cold.append(timed(lambda: fetch_all(plane, Path(node))))
                warm.append(timed(lambda: fetch_all(plane, Path(node))))
            with tempfile.TemporaryDirectory() as node:
                copy.append(timed(lambda: [shutil.copytree(folder, Path(node) / folder.parent.name / folder.name)
                                           for folder in versions]))  # fmt: skip
    files = sum(1 for folder in versions for path in folder.rglob("*") if path.is_file())
    cold_s, warm_s, copy_s = (statistics.median(values) for values in (cold, warm, copy))
    print(f"F1 graph + feature store versions: {files} files, {size / 2**20:.1f} MiB")
    print(f"publish to S3 (first build)        {publish:7.3f} s   ({size / 2**20 / publish:.0f} MiB/s)")
    print(f"publish again (already there)      {republish:7.3f} s")
    print(f"cold fetch into a node cache       {cold_s:7.3f} s   median of {args.repeats}")
    print(f"warm fetch (version already local) {warm_s * 1e3:7.2f} ms")
    print(f"baseline: local folder copy        {copy_s:7.3f} s")
    print(f"ratio cold fetch / local copy      {cold_s / copy_s:7.1f}x")


if __name__ == "__main__":
    main()
