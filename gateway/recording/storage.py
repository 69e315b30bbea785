"""Where finished segments go: one small interface, one implementation per kind of storage.

A segment is written and fsync'd in the gateway's spool directory first (status ``stored``);
``SegmentStorage.put`` then takes it to where recordings are kept (status ``uploaded``) and
says where that is, as a URI the same storage reads (``fetch``) and deletes (``delete``) by.
The recorder never knows which storage it has.

S3-compatible storage (AWS S3, R2, GCS's S3 API, MinIO) goes through ``obstore`` rather than
``aiobotocore``: it is natively asynchronous (no thread per call) in one self-contained wheel
with typed stubs, reads the usual AWS credential chain, and depends on neither botocore nor
aiohttp, whose exact-version pins in aiobotocore would tie this gateway's aiohttp to theirs.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlsplit

import obstore
from obstore.exceptions import BaseError as ObjectStoreError
from obstore.exceptions import NotFoundError
from obstore.store import S3Store

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config

    from gateway.config import Settings


#: What obstore raises for an object that is not there: the builtin, or its own class.
_MISSING: tuple[type[Exception], ...] = (FileNotFoundError, NotFoundError)


class StorageError(Exception):
    """Storage refused or could not be reached; the spooled file is still there."""


class SegmentStorage(Protocol):
    async def put(self, key: str, source: Path) -> str:
        """Take the spooled file ``source`` as ``key`` (``tenant/interview/name``); the URI
        where it is now. ``source`` may be gone afterwards. Raises ``StorageError``."""
        ...

    async def find(self, key: str) -> str | None:
        """The URI under which storage holds ``key``, or None if it does not. ``StorageError``."""
        ...

    async def fetch(self, uri: str) -> bytes:
        """The whole object at ``uri`` (a segment: tens of kilobytes). ``StorageError``."""
        ...

    async def delete(self, uri: str) -> None:
        """Remove the object at ``uri``; one already gone is no error. ``StorageError``."""
        ...


class LocalStorage:
    """A directory on the gateway's own disk (the default: ``recordings`` in the data dir).

    ``put`` renames the spooled file into it (one file system: a rename, nothing copied) and
    fsyncs the directory, so the rename itself survives a crash.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    async def put(self, key: str, source: Path) -> str:
        return await asyncio.to_thread(self._put, key, source)

    def _put(self, key: str, source: Path) -> str:
        target = self.root / key
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
            fsync_directory(target.parent)
        except OSError as exc:
            raise StorageError(f"cannot store {key} in {self.root}: {exc.strerror}") from exc
        return target.as_uri()

    async def find(self, key: str) -> str | None:
        target = self.root / key
        return target.as_uri() if await asyncio.to_thread(target.is_file) else None

    async def fetch(self, uri: str) -> bytes:
        path = self._path(uri)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from exc

    async def delete(self, uri: str) -> None:
        path = self._path(uri)
        try:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {path}: {exc.strerror}") from exc

    def _path(self, uri: str) -> Path:
        parts = urlsplit(uri)
        path = Path(unquote(parts.path))
        if parts.scheme != "file" or not path.is_relative_to(self.root):
            raise StorageError(f"{uri} is not in {self.root}")
        return path


@dataclass(frozen=True)
class S3Settings:
    """An S3-compatible bucket. ``endpoint`` None: AWS's own for ``region``; credentials
    None: obstore's chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, web identity,
    instance metadata). The secret is kept out of ``repr``, hence out of any log line."""

    bucket: str
    endpoint: str | None = None
    region: str = "us-east-1"
    prefix: str = ""
    access_key_id: str | None = None
    secret_access_key: str | None = None
    #: seconds one request may take before it counts as a failure (the uploader retries)
    timeout: float = 30.0

    def __repr__(self) -> str:
        return f"S3Settings(bucket={self.bucket!r}, endpoint={self.endpoint!r})"


#: api.video's smallest chunk but the last (5 MiB); larger chunks mean fewer requests
APIVIDEO_MIN_CHUNK = 5 * 1024 * 1024


@dataclass(frozen=True)
class ApiVideoSettings:
    """api.video (``recording.apivideo``): where, with which key, in what chunks."""

    api_key: str
    base_url: str = "https://ws.api.video"
    chunk_bytes: int = 64 * 1024 * 1024
    #: seconds one request may take before it counts as a failure (publishing retries)
    timeout: float = 60.0

    def __repr__(self) -> str:  # the key stays out of any log line
        return f"ApiVideoSettings(base_url={self.base_url!r}, chunk_bytes={self.chunk_bytes})"


class S3Storage:
    """Objects in an S3-compatible bucket, as ``s3://bucket/key`` URIs.

    obstore's own retries are limited to a couple of quick ones: a storage that is away is
    the uploader's to wait out (``uploads``), on its schedule, not a request's to hang on.
    """

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        client: ClientConfig = {
            "timeout": timedelta(seconds=settings.timeout),
            "connect_timeout": timedelta(seconds=min(5.0, settings.timeout)),
        }
        if settings.endpoint and settings.endpoint.startswith("http://"):
            client["allow_http"] = True
        retry: RetryConfig = {"max_retries": 2, "retry_timeout": timedelta(seconds=10)}
        config: S3Config = {"region": settings.region}
        if settings.endpoint:
            config["endpoint"] = settings.endpoint
        if settings.access_key_id and settings.secret_access_key:
            config["access_key_id"] = settings.access_key_id
            config["secret_access_key"] = settings.secret_access_key
        self._store = S3Store(
            settings.bucket, config=config, client_options=client, retry_config=retry
        )

    def _key(self, key: str) -> str:
        prefix = self.settings.prefix.strip("/")
        return f"{prefix}/{key}" if prefix else key

    def _key_of(self, uri: str) -> str:
        parts = urlsplit(uri)
        if parts.scheme != "s3" or parts.netloc != self.settings.bucket:
            raise StorageError(f"{uri} is not in the bucket {self.settings.bucket}")
        return unquote(parts.path.lstrip("/"))

    async def put(self, key: str, source: Path) -> str:
        name = self._key(key)
        try:
            await obstore.put_async(self._store, name, source)
        except (ObjectStoreError, OSError) as exc:
            raise StorageError(f"cannot upload {name}: {exc}") from exc
        return f"s3://{self.settings.bucket}/{name}"

    async def find(self, key: str) -> str | None:
        name = self._key(key)
        try:
            await obstore.head_async(self._store, name)
        except _MISSING:
            return None
        except ObjectStoreError as exc:
            raise StorageError(f"cannot look up {name}: {exc}") from exc
        return f"s3://{self.settings.bucket}/{name}"

    async def fetch(self, uri: str) -> bytes:
        name = self._key_of(uri)
        try:
            result = await obstore.get_async(self._store, name)
            return bytes(await result.bytes_async())
        except (ObjectStoreError, FileNotFoundError) as exc:  # the builtin: see _MISSING
            raise StorageError(f"cannot read {name}: {exc}") from exc

    async def delete(self, uri: str) -> None:
        name = self._key_of(uri)
        try:
            await obstore.delete_async(self._store, name)
        except ObjectStoreError as exc:
            raise StorageError(f"cannot delete {name}: {exc}") from exc


def segment_storage(settings: Settings) -> SegmentStorage:
    """The storage a gateway's settings name (``GATEWAY_RECORDING_STORAGE``)."""
    root = settings.recording_dir or settings.data_dir / "recordings"
    if settings.recording_storage == "s3":
        assert settings.recording_s3 is not None, "config requires the bucket with s3"
        return S3Storage(settings.recording_s3)
    if settings.recording_storage == "apivideo":
        from gateway.recording.apivideo import ApiVideoStorage  # it builds on this module

        assert settings.recording_apivideo is not None, "config requires the key with apivideo"
        return ApiVideoStorage(root, settings.recording_apivideo)
    return LocalStorage(root)


def fsync_directory(path: Path) -> None:
    """Make a directory's entries (a file created or renamed in it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
