"""Every op and reader kind a job may name resolves to the class that its module registers under that name."""

from __future__ import annotations

import pytest

from data_engine.registry import READER_MODULES, STAGE_MODULES, reader_class, stage_class


@pytest.mark.parametrize("op", sorted(STAGE_MODULES))
def test_stage_op_resolves(op):
    cls = stage_class(op)
    assert cls.op == op
    assert cls.__module__ == STAGE_MODULES[op]


@pytest.mark.parametrize("kind", sorted(READER_MODULES))
def test_reader_kind_resolves(kind):
    cls = reader_class(kind)
    assert cls.kind == kind
    assert cls.__module__.startswith(READER_MODULES[kind])
