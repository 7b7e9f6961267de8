"""Where job data lives: resolve a path or URI to a `Location` (filesystem + path) and enforce the allow-list.

Accepted locations: plain paths and `file://` URIs (the local filesystem), `s3://bucket/key` (pyarrow's
S3FileSystem: AWS or any S3-compatible server through `endpoint_override`) and `gs://` / `gcs://` (pyarrow's
GcsFileSystem). Other schemes (`procedural://`) are not storage: readers interpret them themselves.

Allow-list: a location is usable only if every configured list admits it. The lists are the job's
`storage.allowed_prefixes` and the cluster-wide `JOYAI_ALLOWED_STORAGE_PREFIXES` (comma-separated). Object
storage needs an explicit entry (no list: no bucket is reachable); local paths are free while no list is
configured, and must match an entry (an absolute directory) once one is. Prefixes match whole path segments:
`s3://b/raw` admits `s3://b/raw/x`, not `s3://b/raw-old`.

Credentials are never part of a config: S3 takes the standard AWS chain (`AWS_ACCESS_KEY_ID` /
`AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, profiles, instance roles), GCS the Google default
credentials. The endpoint comes from the config or, when unset there, `AWS_ENDPOINT_URL_S3` /
`AWS_ENDPOINT_URL` (S3) and `STORAGE_EMULATOR_HOST` (GCS). A GCS emulator takes no credentials: one named by
`STORAGE_EMULATOR_HOST` is reached anonymously (as Google's own clients do), one named in the config when
`gcs.anonymous` is set.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

import pyarrow.fs as pafs
from pydantic import BaseModel, ConfigDict, field_validator

ALLOW_ENV = "JOYAI_ALLOWED_STORAGE_PREFIXES"
GCS_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
LOCAL_SCHEMES = ("file",)
OBJECT_STORE_SCHEMES = ("s3", "gs", "gcs")


class StorageError(ValueError):
    """A location that is malformed, of an unsupported scheme, or outside the allow-list; str() is one line."""


class S3Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint_override: str | None = None  # "http://host:port" of an S3-compatible server; None: env, then AWS
    region: str | None = None  # None: AWS_REGION / AWS_DEFAULT_REGION, then the SDK's guess
    force_virtual_addressing: bool = False  # bucket.host style, for servers that need it


class GcsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint_override: str | None = None  # "http(s)://host:port" of an emulator; None: env, then Google
    # Send no credentials (an emulator checks none). Without it, a machine that has no Google credentials
    # waits on the metadata server instead of reaching the endpoint. STORAGE_EMULATOR_HOST implies it.
    anonymous: bool = False
    project_id: str | None = None

    @field_validator("endpoint_override")
    @classmethod
    def _well_formed(cls, endpoint: str | None) -> str | None:
        if endpoint is not None:
            _gcs_endpoint(endpoint)
        return endpoint


class StorageConfig(BaseModel):
    """The `storage:` section of a job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_prefixes: tuple[str, ...] = ()
    s3: S3Settings = S3Settings()
    gcs: GcsSettings = GcsSettings()

    @field_validator("allowed_prefixes")
    @classmethod
    def _well_formed(cls, prefixes: tuple[str, ...]) -> tuple[str, ...]:
        for prefix in prefixes:
            _canonical(prefix)  # StorageError is a ValueError: the job's one-line error names the field
        return prefixes


def split_scheme(text: str) -> tuple[str, str]:
    """("s3", "bucket/key") for "s3://bucket/key"; ("", text) for a plain path."""
    scheme, separator, rest = text.partition("://")
    if separator and scheme.isidentifier():
        return scheme.lower(), rest
    return "", text


def is_storage_uri(text: str) -> bool:
    """Whether `text` names a storage location (a path or a filesystem URI), not a reader's own scheme."""
    scheme, _ = split_scheme(text)
    return scheme in ("", *LOCAL_SCHEMES, *OBJECT_STORE_SCHEMES)


@dataclass(frozen=True)
class Location:
    """A file or directory on one filesystem. Local locations keep plain absolute paths (`uri` == `path`)."""

    uri: str  # canonical: "/abs/path" or "s3://bucket/key"
    path: str  # the path on `filesystem`: "/abs/path" or "bucket/key"
    filesystem: pafs.FileSystem

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name

    @property
    def local_path(self) -> Path:
        if not self.is_local:
            raise StorageError(f"{self.uri}: not a local path")
        return Path(self.path)

    def __str__(self) -> str:
        return self.uri

    def __truediv__(self, relative: str) -> Location:
        if self.is_local:
            joined = str(Path(self.path, relative))
            return Location(joined, joined, self.filesystem)
        return Location(f"{self.uri.rstrip('/')}/{relative}", f"{self.path.rstrip('/')}/{relative}", self.filesystem)

    @property
    def parent(self) -> Location:
        parent = str(PurePosixPath(self.path).parent)
        if self.is_local:
            return Location(parent, parent, self.filesystem)
        scheme, _ = split_scheme(self.uri)
        return Location(f"{scheme}://{parent}", parent, self.filesystem)

    def _info(self) -> pafs.FileInfo:
        return self.filesystem.get_file_info(self.path)

    def exists(self) -> bool:
        return self._info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self._info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        return self._info().type == pafs.FileType.Directory

    def size(self) -> int:
        info = self._info()
        if info.type != pafs.FileType.File:
            raise FileNotFoundError(f"{self.uri}: no such file")
        return info.size

    def open_input(self) -> IO[bytes]:
        """A seekable binary reader (tarfile, pyarrow and PIL take it)."""
        if self.is_local:
            return open(self.path, "rb")
        # Buffered: tarfile reads 512-byte headers, and each unbuffered read is a ranged GET.
        return io.BufferedReader(self.filesystem.open_input_file(self.path), buffer_size=1 << 20)

    def read_bytes(self) -> bytes:
        with self.open_input() as handle:
            return handle.read()

    def write_bytes(self, data: bytes) -> None:
        """Replace the object in one put: readers see the old object or the whole new one. On a local
        filesystem this is a plain write; `data_engine.shards` owns the temp-then-rename protocol there."""
        with self.filesystem.open_output_stream(self.path) as handle:
            handle.write(data)

    def delete(self) -> None:
        """Remove the file if it exists."""
        try:
            self.filesystem.delete_file(self.path)
        except FileNotFoundError:
            pass

    def make_dirs(self) -> None:
        """Create the directory and its parents; object stores have no directories, so nothing to do there."""
        if self.is_local:
            Path(self.path).mkdir(parents=True, exist_ok=True)

    def walk_files(self) -> Iterator[str]:
        """Relative POSIX paths of the files below this directory, recursively; local links to directories
        are not followed. Unordered: callers sort."""
        if self.is_local:
            for directory, _, files in os.walk(self.path, followlinks=False):
                for name in files:
                    yield Path(directory, name).relative_to(self.path).as_posix()
            return
        base = self.path.rstrip("/") + "/"
        selector = pafs.FileSelector(self.path, recursive=True, allow_not_found=True)
        for info in self.filesystem.get_file_info(selector):
            if info.type == pafs.FileType.File and info.path.startswith(base):
                yield info.path[len(base):]

    def contains(self, other: Location) -> bool:
        """Whether `other` lies inside this directory; local paths are compared with links resolved, so a
        symlink under this directory that leads out of it is outside."""
        if self.is_local and other.is_local:
            return Path(other.path).resolve().is_relative_to(Path(self.path).resolve())
        if self.filesystem is not other.filesystem:
            return False
        return _within(other.uri, self.uri)


def _within(uri: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/")
    return uri == prefix or uri.startswith(prefix + "/")


def _canonical(text: str) -> tuple[str, str]:
    """(scheme, canonical uri) of a location; raises StorageError on an unsupported or unsafe one."""
    if not text or "\x00" in text:
        raise StorageError(f"location {text!r} is empty or contains NUL")
    scheme, rest = split_scheme(text)
    if scheme in ("", *LOCAL_SCHEMES):
        return "", os.path.abspath(rest)
    if scheme not in OBJECT_STORE_SCHEMES:
        raise StorageError(f"location {text!r}: unsupported scheme {scheme!r}; supported: a local path, "
                           f"file://, {', '.join(s + '://' for s in OBJECT_STORE_SCHEMES)}")
    parts = PurePosixPath(rest).parts
    if not rest or rest.startswith("/") or any(part in (".", "..") for part in rest.split("/")):
        raise StorageError(f"location {text!r}: expected {scheme}://BUCKET/KEY without '.' or '..' segments")
    return scheme, f"{'gs' if scheme == 'gcs' else scheme}://{'/'.join(parts)}"


def allowed_prefix_lists(config: StorageConfig) -> list[tuple[str, tuple[str, ...]]]:
    """The configured allow-lists, each with where it comes from (for error messages)."""
    lists = []
    if config.allowed_prefixes:
        lists.append(("storage.allowed_prefixes", config.allowed_prefixes))
    from_env = tuple(p.strip() for p in os.environ.get(ALLOW_ENV, "").split(",") if p.strip())
    if from_env:
        try:
            for prefix in from_env:
                _canonical(prefix)
        except StorageError as exc:
            raise StorageError(f"{ALLOW_ENV}: {exc}") from None
        lists.append((ALLOW_ENV, from_env))
    return lists


def check_allowed(text: str, config: StorageConfig) -> str:
    """The canonical URI of `text` if every configured allow-list admits it; StorageError otherwise."""
    scheme, uri = _canonical(text)
    lists = allowed_prefix_lists(config)
    if scheme and not lists:
        raise StorageError(f"{uri} is object storage, and no allow-list admits it: add a prefix to "
                           f"storage.allowed_prefixes or {ALLOW_ENV}")
    for source, prefixes in lists:
        # realpath on both sides: a local symlink inside an allowed directory must not lead out of it
        target = os.path.realpath(uri) if not scheme else uri
        admitted = [p for p in prefixes if _within(target, _prefix_uri(p))]
        if not admitted:
            raise StorageError(f"{uri} is outside the allowed storage prefixes of {source} ({', '.join(prefixes)})")
    return uri


def _prefix_uri(prefix: str) -> str:
    scheme, uri = _canonical(prefix)
    return uri if scheme else os.path.realpath(uri)


def resolve(where: str | Path | Location, config: StorageConfig | None = None) -> Location:
    """The Location of a path or URI, after the allow-list check. A Location passes through unchanged."""
    if isinstance(where, Location):
        return where
    config = config or StorageConfig()
    uri = check_allowed(str(where), config)
    scheme, rest = split_scheme(uri)
    if not scheme:
        return Location(uri, uri, _local_filesystem())
    filesystem = _s3_filesystem(config.s3, _env_endpoint("s3")) if scheme == "s3" else \
        _gcs_filesystem(config.gcs, _env_endpoint("gs"))
    return Location(uri, rest, filesystem)


def as_location(where: str | Path | Location, config: StorageConfig | None = None) -> Location:
    """Like `resolve`, but a `Path` object is taken as a local path its caller owns, without the allow-list
    check: the allow-list governs what jobs and command lines name (strings), not in-process local paths."""
    if isinstance(where, Path):
        path = os.path.abspath(where)
        return Location(path, path, _local_filesystem())
    return resolve(where, config)


def _env_endpoint(scheme: str) -> str | None:
    if scheme == "s3":
        return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return os.environ.get(GCS_EMULATOR_ENV)


def _gcs_endpoint(endpoint: str) -> tuple[str, str]:
    """("http", "host:port") of an endpoint URL; StorageError unless it is http(s)://HOST[:PORT]."""
    scheme, host = split_scheme(endpoint)
    if scheme not in ("http", "https") or not host or "/" in host.rstrip("/"):
        raise StorageError(f"GCS endpoint {endpoint!r}: expected http://HOST:PORT or https://HOST[:PORT]")
    return scheme, host.rstrip("/")


@functools.cache
def _local_filesystem() -> pafs.LocalFileSystem:
    return pafs.LocalFileSystem()


@functools.cache
def _s3_filesystem(settings: S3Settings, env_endpoint: str | None) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(endpoint_override=settings.endpoint_override or env_endpoint, region=settings.region,
                             force_virtual_addressing=settings.force_virtual_addressing)


@functools.cache
def _gcs_filesystem(settings: GcsSettings, env_endpoint: str | None) -> pafs.GcsFileSystem:
    if settings.endpoint_override:
        scheme, host = _gcs_endpoint(settings.endpoint_override)
        anonymous = settings.anonymous
    elif env_endpoint:
        # Google's clients take a bare "host:port" here as plain http
        url = env_endpoint if "://" in env_endpoint else f"http://{env_endpoint}"
        try:
            scheme, host = _gcs_endpoint(url)
        except StorageError as exc:
            raise StorageError(f"{GCS_EMULATOR_ENV}: {exc}") from None
        anonymous = True
    else:
        scheme, host, anonymous = None, None, settings.anonymous
    return pafs.GcsFileSystem(anonymous=anonymous, endpoint_override=host, scheme=scheme,
                              project_id=settings.project_id)

