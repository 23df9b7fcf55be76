"""Virtual time for the sandbox: waits pass `scale` times faster than on AWS; reported times are what AWS would show.

The virtual clock only moves when something waits (a Wait state, a build, a retry back-off, a human). Compute takes
no virtual time. Concurrent waits overlap: a wait of d seconds that starts at virtual time v ends at v + d, and the
clock shows the latest end reached so far — so ten parallel 5-minute builds take 5 virtual minutes, not 50.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class VirtualClock:
    def __init__(self, start: datetime, scale: float = 2e-6) -> None:
        self.start = start.astimezone(UTC)
        self.scale = scale
        self._elapsed = 0.0  # virtual seconds since start
        self._lock = threading.Lock()

    @property
    def elapsed(self) -> float:
        return self._elapsed

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self._elapsed)

    def advance_to(self, elapsed: float) -> None:
        with self._lock:
            self._elapsed = max(self._elapsed, elapsed)

    def sleep(self, seconds: float, interrupt: threading.Event | None = None) -> bool:
        """Wait `seconds` of virtual time. False if `interrupt` was set first (the clock then stays put)."""
        begin = self._elapsed
        if seconds <= 0:
            return True
        real = seconds * self.scale
        if interrupt is not None:
            if interrupt.wait(real):
                return False
        else:
            threading.Event().wait(real)
        self.advance_to(begin + seconds)
        return True

    def real_timeout(self, seconds: float | None) -> float | None:
        return None if seconds is None else seconds * self.scale


_active: VirtualClock | None = None


def active() -> VirtualClock | None:
    return _active


def activate(clock: VirtualClock | None) -> None:
    global _active
    _active = clock
