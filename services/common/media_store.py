"""Content-addressed media store.

Objects are addressed by the SHA-256 of their bytes, so a ref such as
``sha256:<64 hex>.wav`` is its own integrity check, the same render stored twice
is stored once, and replaying the event log re-produces identical refs.

Besides blobs the store keeps *aliases*: small named pointers to a ref (the TTS
render cache maps a hash of its inputs to the rendered audio this way).

:class:`MediaStore` is the protocol a backend implements; :class:`LocalMediaStore`
keeps everything under one directory (env ``CANARY_MEDIA_DIR``, default
``.local/media`` under the current directory). An S3-compatible backend only has
to map the same keys onto object names.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

from services.common.config import settings

_REF_RE = re.compile(r"^sha256:([0-9a-f]{64})\.([a-z0-9]{1,8})$")
_EXT_RE = re.compile(r"^[a-z0-9]{1,8}$")
_ALIAS_RE = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


class MediaNotFound(KeyError):
    """The ref (or alias) is not in the store."""


class InvalidRef(ValueError):
    """The string is not a well-formed media ref (guards against path tricks)."""


def make_ref(data: bytes, ext: str) -> str:
    """Compute the ref ``sha256:<hex>.<ext>`` that ``data`` would be stored under."""
    ext = ext.lower().lstrip(".")
    if not _EXT_RE.match(ext):
        raise InvalidRef(f"bad extension {ext!r}")
    return f"sha256:{hashlib.sha256(data).hexdigest()}.{ext}"


def parse_ref(ref: str) -> tuple[str, str]:
    """Split a ref into (hex digest, extension); raise :class:`InvalidRef` if malformed."""
    m = _REF_RE.match(ref or "")
    if not m:
        raise InvalidRef(f"not a media ref: {ref!r}")
    return m.group(1), m.group(2)


@runtime_checkable
class MediaStore(Protocol):
    """What the media services need from a blob store."""

    def put(self, data: bytes, ext: str) -> str:
        """Store ``data``; return its ref. Idempotent."""

    def get(self, ref: str) -> bytes:
        """Return the bytes of ``ref`` or raise :class:`MediaNotFound`."""

    def exists(self, ref: str) -> bool:
        """Whether ``ref`` is stored."""

    def set_alias(self, name: str, ref: str) -> None:
        """Point alias ``name`` at ``ref`` (last write wins)."""

    def get_alias(self, name: str) -> str | None:
        """Return the ref alias ``name`` points at, or None."""

    # Optional (see :func:`put_file` and :func:`spool_dir`): ``put_file(path, ext) -> ref``
    # stores a finished file without reading it into memory and removes it;
    # ``spool_dir() -> Path`` is where such files are prepared (same filesystem if it can).


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 16) -> str:
    """SHA-256 (hex) of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _check_ext(ext: str) -> str:
    ext = ext.lower().lstrip(".")
    if not _EXT_RE.match(ext):
        raise InvalidRef(f"bad extension {ext!r}")
    return ext


def put_file(store: "MediaStore", path: str | os.PathLike[str], ext: str) -> str:
    """Store the file at ``path`` and remove it; return its ref (blocking).

    Streams when the store can (``store.put_file``); a store without it gets the bytes.
    """
    fn = getattr(store, "put_file", None)
    if fn is not None:
        return fn(path, ext)
    ref = store.put(Path(path).read_bytes(), ext)
    Path(path).unlink(missing_ok=True)
    return ref


def spool_dir(store: "MediaStore") -> Path:
    """Where files bound for ``store`` are prepared (recordings while the call runs)."""
    fn = getattr(store, "spool_dir", None)
    return Path(fn()) if fn is not None else Path(tempfile.gettempdir()) / "canary-spool"


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file in the same directory + rename.

    rename() within one filesystem is atomic, so a reader never sees a torn
    file and two writers racing on the same content both end with a whole one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class LocalMediaStore:
    """A :class:`MediaStore` on a local directory.

    Layout: ``<root>/objects/ab/cd/<hex>.<ext>`` (two fan-out levels keep
    directories small) and ``<root>/aliases/<name>``.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        if root is None:
            root = settings().media.dir or os.path.join(os.getcwd(), ".local", "media")
        self.root = Path(root)

    def path(self, ref: str) -> Path:
        """Filesystem path of ``ref`` (whether or not it exists)."""
        digest, ext = parse_ref(ref)
        return self.root / "objects" / digest[:2] / digest[2:4] / f"{digest}.{ext}"

    def put(self, data: bytes, ext: str) -> str:
        ref = make_ref(data, ext)
        p = self.path(ref)
        if not p.exists():  # content-addressed: an existing file already has these bytes
            _atomic_write(p, data)
        return ref

    def put_file(self, path: str | os.PathLike[str], ext: str) -> str:
        """Move the file at ``path`` into the store (a rename from the spool area: no copy)."""
        src = Path(path)
        ref = f"sha256:{file_sha256(src)}.{_check_ext(ext)}"
        dest = self.path(ref)
        if dest.exists():  # content-addressed: already stored
            src.unlink(missing_ok=True)
            return ref
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(src, dest)  # atomic within one filesystem; the spool wrote and fsynced it
        except OSError:  # another filesystem: copy through a temp file next to the object
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
                    while block := f.read(1 << 16):
                        out.write(block)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            src.unlink(missing_ok=True)
        return ref

    def spool_dir(self) -> Path:
        """Files bound for the store are prepared here (same filesystem, so ``put_file`` renames)."""
        return self.root / "spool"

    def get(self, ref: str) -> bytes:
        try:
            return self.path(ref).read_bytes()
        except FileNotFoundError:
            raise MediaNotFound(ref) from None

    def exists(self, ref: str) -> bool:
        return self.path(ref).exists()

    def _alias_path(self, name: str) -> Path:
        if not _ALIAS_RE.match(name) or name.startswith("."):
            raise InvalidRef(f"bad alias name {name!r}")
        return self.root / "aliases" / name

    def set_alias(self, name: str, ref: str) -> None:
        parse_ref(ref)
        _atomic_write(self._alias_path(name), ref.encode())

    def get_alias(self, name: str) -> str | None:
        try:
            ref = self._alias_path(name).read_text().strip()
        except FileNotFoundError:
            return None
        # An alias whose blob was deleted (e.g. by retention) is a cache miss.
        return ref if _REF_RE.match(ref) and self.exists(ref) else None


_default: MediaStore | None = None


def get_media_store() -> MediaStore:
    """The process-wide store configured from the environment."""
    global _default
    if _default is None:
        kind = settings().media.store  # "local" or "s3" (ConfigError, a ValueError, on anything else)
        if kind == "s3":
            from services.common.media_store_s3 import S3MediaStore  # boto3 only when asked for

            _default = S3MediaStore.from_env()
        else:
            _default = LocalMediaStore()
    return _default


def set_media_store(store: MediaStore | None) -> None:
    """Replace the process-wide store (tests, or an S3 backend at start-up)."""
    global _default
    _default = store
