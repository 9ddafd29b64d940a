"""The worked examples in the docstrings of the pure monitor modules."""

from __future__ import annotations

import doctest

import pytest

from conveyor.monitors import rules, state, window


@pytest.mark.parametrize("module", [rules, state, window])
def test_doctests(module: object) -> None:
    failures, tried = doctest.testmod(module)  # type: ignore[arg-type]
    assert tried and not failures
