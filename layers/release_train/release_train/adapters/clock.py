"""The one source of 'now' for services. Production: the system clock. The sandbox swaps in its virtual clock."""

from __future__ import annotations

from datetime import UTC, datetime


def system_now() -> datetime:
    return datetime.now(UTC)


class Clock:
    """Injected into services; `now` is looked up per call so the sandbox can replace `Clock.source`."""

    source = staticmethod(system_now)

    def now(self) -> datetime:
        return type(self).source()
