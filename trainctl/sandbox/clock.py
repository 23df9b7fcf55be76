"""Virtual time for the sandbox: waits pass `scale` times faster than on AWS; reported times are what AWS would show.

The virtual clock only moves when something waits (a Wait state, a build, a retry back-off, a human). Compute takes
no virtual time. Concurrent waits overlap: a wait of d seconds that starts at virtual time v ends at v + d, and the
clock shows the latest end reached so far — so ten parallel 5-minute builds take 5 virtual minutes, not 50.

People act in no virtual time either: while a scripted person acts (`hold()`: an operator's stop, an approval, a
second start planning), waits that come due are held back, so a 30-minute build cannot finish "during" a cancel
that, on AWS, would land in the same second.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta


class VirtualClock:
    def __init__(self, start: datetime, scale: float = 2e-6) -> None:
        self.start = start.astimezone(UTC)
        self.scale = scale
        self._elapsed = 0.0  # virtual seconds since start
        self._lock = threading.Lock()
        self._holds = 0
        self._unheld = threading.Condition()

    @property
    def elapsed(self) -> float:
        return self._elapsed

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self._elapsed)

    def advance_to(self, elapsed: float) -> None:
        with self._lock:
            self._elapsed = max(self._elapsed, elapsed)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Someone acts now: waits that come due meanwhile end only after they are done."""
        with self._unheld:
            self._holds += 1
        try:
            yield
        finally:
            with self._unheld:
                self._holds -= 1
                if self._holds == 0:
                    self._unheld.notify_all()

    def wait_unheld(self) -> None:
        with self._unheld:
            self._unheld.wait_for(lambda: self._holds == 0, timeout=60)

    def sleep(
        self,
        seconds: float,
        interrupt: threading.Event | None = None,
        still_waiting: Callable[[], bool] | None = None,
    ) -> bool:
        """Wait `seconds` of virtual time. False, with the clock left where it was, if `interrupt` fired or, once the
        time is up and nobody holds the world, `still_waiting()` says the waiter was stopped meanwhile."""
        begin = self._elapsed
        if seconds <= 0:
            return True
        real = seconds * self.scale
        if interrupt is not None:
            if interrupt.wait(real):
                return False
        else:
            threading.Event().wait(real)
        self.wait_unheld()
        if still_waiting is not None and not still_waiting():
            return False
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
