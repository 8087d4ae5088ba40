"""Property-suite setup: the Hypothesis profile and the false-alarm budget check.

``load_profile()`` picks the profile from HYPOTHESIS_PROFILE (see keras_initlab.testing).
At the end of the session the number of statistical checks made at the budget's alpha is
compared with the budget's ``K``: a run that made more checks than budgeted has a larger
false-alarm rate than the one it states, and fails.
"""

from __future__ import annotations

import pytest

from keras_initlab import testing as kt

kt.load_profile()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if kt.checks_made() > kt.budget().checks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    made, budget = kt.checks_made(), kt.budget()
    verdict = "within" if made <= budget.checks else "FAILED: more than"
    terminalreporter.write_line(
        f"keras_initlab.testing: {made} statistical checks at alpha={budget.alpha:.3g}, "
        f"{verdict} the budget K={budget.checks} (run false-alarm rate <= {budget.rate:g})"
    )
