"""`python -m bench quick` (a CI stage) runs every scenario of its plan through the same two
hooks: a scenario that only prints its figures would break that stage, not this suite."""

from __future__ import annotations

import pytest

from bench.__main__ import parser
from bench.quick import PLAN


@pytest.mark.parametrize("argv", PLAN, ids=[" ".join(argv[:1]) for argv in PLAN])
def test_every_quick_step_measures_and_shows(argv: list[str]) -> None:
    step = parser().parse_args(argv)
    assert callable(getattr(step, "figures", None)), f"{argv[0]} has no figures hook"
    assert callable(getattr(step, "show", None)), f"{argv[0]} has no show hook"
