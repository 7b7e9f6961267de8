"""Media references resolve only under a configured root: shards can name files, never escape the root."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from data_engine.storage import Location, split_scheme


class UnsafePathError(ValueError):
    """A media reference points outside its configured root."""


def resolve_media_uri(uri: str, root: Path) -> Path:
    """Resolve a relative media reference (or a file:// URI inside `root`) to an absolute path under `root`.

    Rejects `..` components, absolute paths outside the root and symlinks that lead out of it.
    """
    if not uri or "\x00" in uri:
        raise UnsafePathError(f"media reference {uri!r} is empty or contains NUL")
    reference = uri.removeprefix("file://")
    root_resolved = root.resolve()
    candidate = Path(reference)
    if candidate.is_absolute():
        target = candidate.resolve()
    else:
        if ".." in PurePosixPath(reference).parts or ".." in candidate.parts:
            raise UnsafePathError(f"media reference {uri!r} contains '..'")
        target = (root_resolved / candidate).resolve()
    if not target.is_relative_to(root_resolved):
        raise UnsafePathError(f"media reference {uri!r} resolves outside the media root {root_resolved}")
    return target


def resolve_media_location(uri: str, root: Location) -> Location:
    """`resolve_media_uri` for a media root on any filesystem: a relative reference, or an absolute URI of the
    root's own scheme inside it."""
    if root.is_local:
        path = str(resolve_media_uri(uri, root.local_path))
        return Location(path, path, root.filesystem)
    if not uri or "\x00" in uri:
        raise UnsafePathError(f"media reference {uri!r} is empty or contains NUL")
    scheme, rest = split_scheme(uri)
    if ".." in PurePosixPath(rest).parts:
        raise UnsafePathError(f"media reference {uri!r} contains '..'")
    target = Location(uri, rest, root.filesystem) if scheme else root / rest
    if scheme and split_scheme(root.uri)[0] != scheme or not root.contains(target):
        raise UnsafePathError(f"media reference {uri!r} resolves outside the media root {root}")
    return target
