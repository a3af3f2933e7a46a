"""The Hypothesis profile named by HYPOTHESIS_PROFILE is the one in force, and
``make test-slow`` names the slow profile."""

from __future__ import annotations

import os
import re
from pathlib import Path

from hypothesis import settings

from tests.conftest import PROFILE_ENV, SLOW_MAX_EXAMPLES

ROOT = Path(__file__).resolve().parents[1]


def test_the_named_profile_is_loaded() -> None:
    name = os.environ.get(PROFILE_ENV, "default")
    assert settings().max_examples == settings.get_profile(name).max_examples
    assert settings().deadline is None
    assert settings.get_profile("slow").max_examples == SLOW_MAX_EXAMPLES > settings.get_profile("default").max_examples


def test_make_test_slow_selects_the_slow_profile() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^test-slow:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, "no test-slow target"
    assert re.search(rf"\b{PROFILE_ENV}=slow\b.*-m slow", recipe.group(1)), recipe.group(1)
