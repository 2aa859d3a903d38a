"""S3-compatible backend for the content-addressed media store.

:class:`S3MediaStore` implements :class:`~services.common.media_store.MediaStore` on
any S3 API (AWS S3, MinIO, Ceph RGW, R2, ...). It keeps the local store's layout,
only as object keys under a configurable prefix::

    <prefix>objects/ab/cd/<hex>.<ext>     blobs (content-addressed)
    <prefix>aliases/<name>                aliases: a small text object holding a ref

Every call is blocking (boto3); callers already run media I/O off the event loop
via :func:`services.common.audio.run_blocking`, so this module stays synchronous.
One boto3 client is created per store and shared: clients are thread-safe.

Configuration (:meth:`S3MediaStore.from_env`, used by ``get_media_store()`` when
``CANARY_MEDIA_STORE=s3``):

``CANARY_S3_BUCKET`` (required), ``CANARY_S3_PREFIX`` (default empty),
``CANARY_S3_ENDPOINT_URL`` (unset = AWS), ``CANARY_S3_REGION`` (default
``AWS_REGION``/``AWS_DEFAULT_REGION``, else ``us-east-1``). Credentials come from
boto3's standard chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/
``AWS_SESSION_TOKEN``, profile, instance role); this module never reads, stores
or logs them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from services.common.config import S3Settings, load, settings
from services.common.media_store import (_ALIAS_RE, _REF_RE, InvalidRef, MediaNotFound, _check_ext, file_sha256,
                                         make_ref, parse_ref)

log = logging.getLogger(__name__)

_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})

_CONTENT_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
    "flac": "audio/flac",
    "raw": "application/octet-stream",
    "pcm": "application/octet-stream",
    "txt": "text/plain",
    "json": "application/json",
}


class MediaIntegrityError(RuntimeError):
    """A stored object's bytes do not hash to its ref (corrupted or overwritten)."""


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _is_not_found(exc: ClientError) -> bool:
    # NoSuchBucket is deliberately *not* "not found": a missing bucket is a
    # configuration error and must surface, not read as an empty cache.
    return _error_code(exc) in _NOT_FOUND_CODES


def _normalize_prefix(prefix: str | None) -> str:
    p = (prefix or "").strip().strip("/")
    if p and any(part in ("", ".", "..") for part in p.split("/")):
        raise ValueError(f"bad S3 key prefix {prefix!r}")
    return f"{p}/" if p else ""


def _redact_url(url: str | None) -> str | None:
    """Drop any userinfo from an endpoint URL before it is shown anywhere."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


class S3MediaStore:
    """A :class:`~services.common.media_store.MediaStore` on an S3-compatible bucket."""

    def __init__(self, bucket: str, *, prefix: str = "", endpoint_url: str | None = None,
                 region: str | None = None, client: Any = None,
                 addressing_style: str | None = None, max_pool_connections: int = 16,
                 verify_on_get: bool = True) -> None:
        if not bucket:
            raise ValueError("S3MediaStore needs a bucket (CANARY_S3_BUCKET)")
        self.bucket = bucket
        self.prefix = _normalize_prefix(prefix)
        self.endpoint_url = endpoint_url or None
        # AWS_REGION / AWS_DEFAULT_REGION are the AWS SDK's own variables (botocore reads them
        # too), not Canary settings: CANARY_S3_REGION, when set, arrives here as `region`.
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.verify_on_get = verify_on_get
        if client is None:
            # Path-style addressing for custom endpoints: MinIO & co. rarely have
            # wildcard DNS for virtual-host buckets. AWS keeps botocore's default.
            style = addressing_style or ("path" if self.endpoint_url else "auto")
            config = Config(
                region_name=self.region,
                s3={"addressing_style": style},
                signature_version="s3v4",
                retries={"max_attempts": 4, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
                max_pool_connections=max_pool_connections,
                # We verify SHA-256 of every blob ourselves; skipping botocore's
                # default CRC trailers keeps older S3-compatible servers working.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            # A private session: the default one is not thread-safe to build clients from.
            client = boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, config=config)
        self.client = client

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **kwargs: Any) -> "S3MediaStore":
        """From settings().media.s3 (CANARY_S3_*), or from the variables in ``environ``."""
        s3 = settings().media.s3 if environ is None else load(S3Settings, environ)
        if not s3.bucket:
            raise ValueError("CANARY_MEDIA_STORE=s3 needs CANARY_S3_BUCKET")
        return cls(s3.bucket, prefix=s3.prefix, endpoint_url=s3.endpoint_url, region=s3.region, **kwargs)

    def __repr__(self) -> str:  # never includes credentials
        return (f"S3MediaStore(bucket={self.bucket!r}, prefix={self.prefix!r}, "
                f"endpoint_url={_redact_url(self.endpoint_url)!r}, region={self.region!r})")

    # -- keys ---------------------------------------------------------------

    def key(self, ref: str) -> str:
        """Object key of ``ref`` (whether or not it exists)."""
        digest, ext = parse_ref(ref)
        return f"{self.prefix}objects/{digest[:2]}/{digest[2:4]}/{digest}.{ext}"

    def _alias_key(self, name: str) -> str:
        if not isinstance(name, str) or not _ALIAS_RE.match(name) or name.startswith("."):
            raise InvalidRef(f"bad alias name {name!r}")
        return f"{self.prefix}aliases/{name}"

    # -- blobs --------------------------------------------------------------

    def put(self, data: bytes, ext: str) -> str:
        ref = make_ref(data, ext)
        if self.exists(ref):  # content-addressed: an existing object already has these bytes
            return ref
        digest, ext = parse_ref(ref)
        # Two writers racing here both PUT identical bytes; S3 PUTs are atomic
        # (readers see the old or the new whole object), so the result is one object.
        self.client.put_object(
            Bucket=self.bucket, Key=self.key(ref), Body=bytes(data),
            ContentType=_CONTENT_TYPES.get(ext, "application/octet-stream"),
            Metadata={"sha256": digest},
        )
        log.debug("media stored in s3", extra={"ref": ref, "bytes": len(data)})
        return ref

    def put_file(self, path: str | os.PathLike[str], ext: str) -> str:
        """Upload the file at ``path`` (streamed from disk, not read into memory) and remove it."""
        src = Path(path)
        ext = _check_ext(ext)
        digest = file_sha256(src)
        ref = f"sha256:{digest}.{ext}"
        if not self.exists(ref):
            with open(src, "rb") as body:
                self.client.put_object(Bucket=self.bucket, Key=self.key(ref), Body=body,
                                       ContentType=_CONTENT_TYPES.get(ext, "application/octet-stream"),
                                       Metadata={"sha256": digest})
            log.debug("media file stored in s3", extra={"ref": ref, "bytes": src.stat().st_size})
        src.unlink(missing_ok=True)
        return ref

    def spool_dir(self) -> Path:
        """Files bound for the bucket are prepared in the system's temporary directory."""
        return Path(tempfile.gettempdir()) / "canary-spool"

    def get(self, ref: str) -> bytes:
        key = self.key(ref)  # raises InvalidRef first
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _is_not_found(exc):
                raise MediaNotFound(ref) from None
            raise
        with resp["Body"] as body:
            data = body.read()
        if self.verify_on_get and hashlib.sha256(data).hexdigest() != parse_ref(ref)[0]:
            raise MediaIntegrityError(f"object for {ref} does not match its digest")
        return data

    def exists(self, ref: str) -> bool:
        key = self.key(ref)
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _is_not_found(exc):
                return False
            raise
        return True

    # -- aliases ------------------------------------------------------------

    def set_alias(self, name: str, ref: str) -> None:
        parse_ref(ref)
        self.client.put_object(Bucket=self.bucket, Key=self._alias_key(name), Body=ref.encode(),
                               ContentType="text/plain")

    def get_alias(self, name: str) -> str | None:
        key = self._alias_key(name)
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _is_not_found(exc):
                return None
            raise
        with resp["Body"] as body:
            ref = body.read(512).decode("utf-8", "replace").strip()
        # An alias whose blob was deleted (e.g. by a lifecycle rule) is a cache miss.
        return ref if _REF_RE.match(ref) and self.exists(ref) else None

    # -- extras -------------------------------------------------------------

    def presigned_url(self, ref: str, expires_in: int = 300, *, filename: str | None = None) -> str:
        """A time-limited GET URL for ``ref`` straight from the bucket.

        Does not check that the object exists. ``filename`` sets the download's
        Content-Disposition.
        """
        if not 1 <= int(expires_in) <= 7 * 24 * 3600:
            raise ValueError("expires_in must be between 1 s and 7 days")
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key(ref)}
        if filename is not None:
            if not _ALIAS_RE.match(filename):
                raise ValueError(f"bad download filename {filename!r}")
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=int(expires_in))

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (development / tests; production buckets are provisioned)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self.client.create_bucket(**kwargs)
        except ClientError as exc:
            if _error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
