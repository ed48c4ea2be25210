"""The one module that builds boto3 clients: endpoint override and standard retries.

MLflow's own S3 artifact repository reads the same settings from the environment, which
`apply_s3_environment` sets (without overriding what the user exported).
"""

import os
from typing import Any, cast

from chassis.errors import StorageError
from chassis.settings import ChassisSettings


def apply_s3_environment(settings: ChassisSettings) -> None:
    if settings.s3_endpoint_url:
        os.environ.setdefault("MLFLOW_S3_ENDPOINT_URL", settings.s3_endpoint_url)
        os.environ.setdefault("AWS_ENDPOINT_URL_S3", settings.s3_endpoint_url)
    os.environ.setdefault("AWS_RETRY_MODE", "standard")
    os.environ.setdefault("AWS_MAX_ATTEMPTS", str(settings.s3_max_attempts))


def s3_client(settings: ChassisSettings) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": settings.s3_max_attempts})
    return cast(Any, boto3.client("s3", endpoint_url=settings.s3_endpoint_url, config=config))


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise StorageError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def check_bucket(settings: ChassisSettings, uri: str) -> None:
    """Fail early, with the bucket named, instead of deep inside an MLflow upload."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _ = split_s3_uri(uri)
    try:
        s3_client(settings).head_bucket(Bucket=bucket)
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", "?"))

        raise StorageError(f"S3 bucket {bucket!r} is not usable ({code}): {error}") from error
    except BotoCoreError as error:
        raise StorageError(f"S3 endpoint for bucket {bucket!r} unreachable: {error}") from error


def list_keys(settings: ChassisSettings, uri: str) -> list[str]:
    bucket, prefix = split_s3_uri(uri)
    paginator = s3_client(settings).get_paginator("list_objects_v2")
    keys: list[str] = []
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return keys


def object_body(settings: ChassisSettings, bucket: str, key: str) -> Any:
    return s3_client(settings).get_object(Bucket=bucket, Key=key)["Body"].read()


class BlobStore:
    """Write and list small files under a root that is a local folder or an s3:// prefix."""

    def __init__(self, settings: ChassisSettings, root: str) -> None:
        self.settings = settings
        self.root = root.rstrip("/")
        self.is_s3 = root.startswith("s3://")

    def write(self, relative: str, payload: bytes) -> None:
        if self.is_s3:
            bucket, prefix = split_s3_uri(f"{self.root}/{relative}")
            s3_client(self.settings).put_object(Bucket=bucket, Key=prefix, Body=payload)
            return
        from pathlib import Path

        path = Path(self.root) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_bytes(payload)
        temporary.replace(path)  # readers never see half a file

    def list(self, relative_prefix: str) -> list[str]:
        """Relative paths of files under `relative_prefix`, sorted."""
        if self.is_s3:
            bucket, prefix = split_s3_uri(f"{self.root}/{relative_prefix}")
            root_key = split_s3_uri(self.root + "/")[1]
            keys = list_keys(self.settings, f"s3://{bucket}/{prefix}")
            return sorted(k[len(root_key) :] for k in keys)
        from pathlib import Path

        base = Path(self.root)
        folder = base / relative_prefix
        if not folder.exists():
            return []
        return sorted(
            str(p.relative_to(base))
            for p in folder.rglob("*")
            if p.is_file() and p.suffix != ".tmp"
        )

    def read(self, relative: str) -> bytes:
        if self.is_s3:
            bucket, key = split_s3_uri(f"{self.root}/{relative}")
            return bytes(object_body(self.settings, bucket, key))
        from pathlib import Path

        return (Path(self.root) / relative).read_bytes()
