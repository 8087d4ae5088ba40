"""Hypothesis profiles for statistical suites, chosen by the HYPOTHESIS_PROFILE variable.

==============  =============================================================================
profile         what it is for
==============  =============================================================================
``ci``          CI and the default under $CI: derandomized (the same examples every run), no
                example database, no deadline, the reproduction blob printed on failure.
``dev``         local work (the default otherwise): random examples, the example database
                replays failures, no deadline.
``thorough``    nightly: 20x the examples of ``ci``; the false-alarm budget's ``K`` is
                raised to match (``keras_initlab.testing.CHECKS_PER_RUN``).
``mutation``    mutation testing: derandomized, no database, no shrinking (a mutant only
                needs to fail, not to be explained), no deadline.
==============  =============================================================================

Hypothesis loads its own ``ci`` profile whenever the CI variable is set; ``load_profile``
registers this module's profiles (replacing it) and loads the chosen one.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

from keras_initlab._validation import unknown_name_message
from keras_initlab.testing._budget import PROFILE_ENV, set_active_profile

CI_EXAMPLES = 20  # examples per property in CI: the suite's runtime budget
THOROUGH_FACTOR = 20  # thorough runs this many times the ci examples
_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
PROFILES: dict[str, dict] = {
    "ci": {
        **_COMMON,
        "max_examples": CI_EXAMPLES,
        "derandomize": True,
        "database": None,
        "print_blob": True,
    },
    "dev": {**_COMMON, "max_examples": CI_EXAMPLES},
    "thorough": {**_COMMON, "max_examples": THOROUGH_FACTOR * CI_EXAMPLES},
    "mutation": {
        **_COMMON,
        "max_examples": CI_EXAMPLES,
        "derandomize": True,
        "database": None,
        "phases": [Phase.explicit, Phase.reuse, Phase.generate],
    },
}


def register_profiles() -> None:
    """Register the ``ci``, ``dev``, ``thorough`` and ``mutation`` profiles."""
    for name, options in PROFILES.items():
        settings.register_profile(name, **options)


def load_profile(name: str | None = None) -> str:
    """Register the profiles and load ``name``; return the name loaded.

    Without ``name``: $HYPOTHESIS_PROFILE, else ``ci`` when $CI is set, else ``dev``. Call it
    once from ``conftest.py``; the false-alarm budget follows the profile.

    Raises:
        ValueError: an unknown profile name.

    Example (in conftest.py):
    >>> sorted(PROFILES)  # load_profile() picks one of these
    ['ci', 'dev', 'mutation', 'thorough']
    """
    if name is None:
        name = os.environ.get(PROFILE_ENV) or ("ci" if os.environ.get("CI") else "dev")
    if name not in PROFILES:
        raise ValueError(unknown_name_message(PROFILE_ENV, name, PROFILES))
    register_profiles()
    settings.load_profile(name)
    set_active_profile(name)
    return name
