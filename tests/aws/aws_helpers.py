"""Helpers for the outlast.aws tests: plain boto3 clients, a refused port."""

from __future__ import annotations

import socket
from typing import Any

import boto3
from botocore.config import Config


def raw_client(service: str, endpoint_url: str, *, region: str = "us-east-1", **config: Any) -> Any:
    """A plain boto3 client for ``endpoint_url`` (path-style S3, short timeouts)."""
    options: dict[str, Any] = {"connect_timeout": 2, "read_timeout": 10}
    options.update(config)
    return boto3.session.Session().client(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(s3={"addressing_style": "path"}, **options),
    )


def refused_port() -> int:
    """A loopback port nothing listens on (connects to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
