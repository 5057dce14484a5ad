"""Real servers on 127.0.0.1 for the remote-read tests: an S3 endpoint (moto) and a Range server.

Each is started by the tests that use it and stopped when they end; nothing is left running.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lazyimg._rangeserver import RangeServer

REGION = "eu-west-1"  # moto refuses a LocationConstraint of us-east-1
SECRET = "s3cr3t-Value-Never-Shown"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A fresh bucket; yields ``{"bucket", "options", "client", "put"}``."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name=REGION,
        aws_access_key_id="test-key-id",
        aws_secret_access_key=SECRET,
    )
    bucket = "lazyimg-" + request.node.name.lower().replace("_", "-")[:40].strip("-[]")
    bucket = "".join(c if c.isalnum() or c == "-" else "-" for c in bucket).strip("-")
    client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    options = {
        "key": "test-key-id",
        "secret": SECRET,
        "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": REGION},
    }

    def put(path: Path, key: str | None = None) -> str:
        key = key or path.name
        client.upload_file(str(path), bucket, key)
        return f"s3://{bucket}/{key}"

    yield {"bucket": bucket, "options": options, "client": client, "put": put}


@pytest.fixture
def http(tmp_path: Path) -> Iterator[RangeServer]:
    root = tmp_path / "served"
    root.mkdir()
    with RangeServer(root) as server:
        yield server
