"""The progress lines of ``run_comparison``: one per run, with elapsed time and an ETA."""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from typing import Any, TextIO

_BAR_WIDTH = 12  # characters of the progress bar (a finished line fits in 79 columns)


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """One progress line per run (a scheme, all its seeds) with elapsed time and an ETA.

    On a terminal the line is redrawn in place (``\\r``), padded to clear what a longer
    line left and cut to the terminal's width so that it never wraps; elsewhere only the
    finished line is written.
    """

    def __init__(self, stream: TextIO | None, total: int, epochs: int) -> None:
        self.stream, self.total, self.index = stream, total, 0
        self.epochs_total, self.epochs_done = total * epochs, 0
        self.start_time = time.perf_counter()
        self._shown = 0

    def _write(self, line: str, *, final: bool) -> None:
        stream = self.stream
        if stream is None:
            return
        if stream.isatty():
            columns = shutil.get_terminal_size((80, 24)).columns - 1
            line = line[:columns]
            stream.write("\r" + line.ljust(self._shown) + ("\n" if final else ""))
            self._shown = 0 if final else len(line)
        elif final:
            stream.write(line + "\n")
        stream.flush()

    def start(self, label: str, epochs: int) -> Callable[[int, dict[str, Any]], None]:
        self.index += 1
        prefix = f"[{self.index:>2}/{self.total}] {label:<22}"

        def update(epoch: int, logs: dict[str, Any]) -> None:
            done = epoch + 1
            self.epochs_done += 1
            elapsed = time.perf_counter() - self.start_time
            left = self.epochs_total - self.epochs_done
            eta = elapsed / self.epochs_done * left
            bar = "#" * (done * _BAR_WIDTH // epochs)
            line = (
                f"{prefix} |{bar:<{_BAR_WIDTH}}| {done}/{epochs} "
                f"loss {logs.get('loss', math.nan):.3g} "
                f"{_clock(elapsed)} ETA {_clock(eta)}"
            )
            self._write(line, final=done == epochs)

        return update
