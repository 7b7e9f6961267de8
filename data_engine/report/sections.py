"""The section registry: each domain registers a `SectionKind` (claims a directory, renders its body) from its
own `report.py`; `data_engine/registry.py` lists the modules that do, and the stage section is the fallback."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from data_engine.report.scan import DEFAULT_MAX_SCANNED_ROWS, ReportInput


@dataclass(frozen=True)
class ReportOptions:
    sample_rows: int = 24  # images per accepted-samples grid; examples per domain section
    rejected_per_reason: int = 6
    max_scanned_rows: int = DEFAULT_MAX_SCANNED_ROWS


@dataclass(frozen=True)
class SectionKind:
    """A section renderer: `claims` looks at what a directory holds, `render` returns the section's body."""

    name: str
    claims: Callable[[ReportInput], bool]
    render: Callable[[ReportInput, ReportOptions], str]


_REGISTERED: list[SectionKind] = []


def register_section(kind: SectionKind) -> SectionKind:
    if any(existing.name == kind.name for existing in _REGISTERED):
        raise ValueError(f"section kind {kind.name!r} registered twice")
    _REGISTERED.append(kind)
    return kind


def registered_sections() -> list[SectionKind]:
    """The domain kinds registered so far, in registration order."""
    return list(_REGISTERED)
