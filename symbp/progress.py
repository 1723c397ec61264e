"""Progress for long runs when stderr is not a terminal (a notebook's ``!symbp train``, ``| tee``).

tqdm's bar redraws one line with carriage returns, which a pipe or a notebook
cell shows as one growing blob or not at all; this prints a whole line every
few seconds instead, with the same information.
"""

from __future__ import annotations

import sys
import time


class LineProgress:
    """The subset of tqdm's interface that training uses: ``update``, ``set_postfix_str``, ``close``."""

    def __init__(self, total: int, initial: int = 0, every: float = 5.0, stream=None, clock=time.monotonic):
        self.total, self.n, self.every = total, initial, every
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.start_n, self.start_t = initial, clock()
        self.last = self.start_t
        self.postfix = ""

    def update(self, k: int = 1) -> None:
        self.n += k
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            self._line(now)

    def set_postfix_str(self, s: str, refresh: bool = True) -> None:
        self.postfix = s

    def close(self) -> None:
        if self.n > self.start_n:
            self._line(self.clock())

    def _line(self, now) -> None:
        rate = (self.n - self.start_n) / max(now - self.start_t, 1e-9)
        pct = 100.0 * self.n / self.total if self.total else 100.0
        tail = f", {self.postfix}" if self.postfix else ""
        print(f"step {self.n:,}/{self.total:,} ({pct:.1f}%){tail}, {rate:,.0f} steps/s",
              file=self.stream, flush=True)
