"""Shared test configuration: Hypothesis profiles, chosen by ``HYPOTHESIS_PROFILE``.

``default`` (when the variable is unset) keeps the default suite fast;
``slow`` (2000 examples) is what ``make test-slow`` sets. ``ci`` is kept as
another name for ``default``. An unknown name fails at start-up.
"""

import os

from hypothesis import HealthCheck, settings

PROFILE_ENV = "HYPOTHESIS_PROFILE"
SLOW_MAX_EXAMPLES = 2000

_common = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("default", **_common)
settings.register_profile("ci", **_common)
settings.register_profile("slow", max_examples=SLOW_MAX_EXAMPLES, **_common)
settings.load_profile(os.environ.get(PROFILE_ENV, "default"))
