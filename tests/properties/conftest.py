"""Property-suite setup: the Hypothesis profile and the false-alarm budget check.

``load_profile()`` picks the profile from HYPOTHESIS_PROFILE (see keras_initlab.testing).
A run that made more statistical checks at the budget's alpha than the budget's ``K`` has a
larger false-alarm rate than the one it states, and fails. Under pytest-xdist every worker
counts its own checks, so each may use ``K / workers`` of them: the sum stays within ``K``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from keras_initlab import testing as kt

kt.load_profile()


@pytest.fixture(scope="session", autouse=True)
def _false_alarm_budget() -> Iterator[None]:
    yield
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    budget = kt.budget()
    made, allowed = kt.checks_made(), budget.checks // workers
    assert made <= allowed, (
        f"{made} statistical checks at alpha={budget.alpha:.3g} exceed this process's share "
        f"{allowed} of the budget K={budget.checks}: the run's false-alarm rate would exceed "
        f"{budget.rate:g}"
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    made, budget = kt.checks_made(), kt.budget()
    if made:  # the process that ran the checks (not an xdist controller)
        terminalreporter.write_line(
            f"keras_initlab.testing: {made} statistical checks at alpha={budget.alpha:.3g}, "
            f"budget K={budget.checks} (run false-alarm rate <= {budget.rate:g})"
        )
