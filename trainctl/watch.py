"""`status --watch`: read, show, pause, until the release that was running ends. The clock is the caller's: `sleep`
is passed in, so a test runs iterations without waiting on the wall."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Watched:
    release_id: str | None  # the release that was running when the watch began (None: nothing to watch)
    last: dict[str, Any]  # the last status document read
    refreshes: int


def _running_id(doc: dict[str, Any]) -> str | None:
    running = doc.get("running")
    if not running or running.get("status") != "RUNNING":
        return None
    return str(running["release_id"])


def watch_release(
    read: Callable[[], dict[str, Any]],
    show: Callable[[dict[str, Any]], None],
    sleep: Callable[[float], None],
    interval: float,
    max_refreshes: int | None = None,
) -> Watched:
    """Show the status every `interval` seconds until the release running at the start is no longer the running one
    (it ended, or its lock was taken over). `max_refreshes` bounds the loop (None: until the release ends)."""
    doc = read()
    watched = _running_id(doc)
    refreshes = 0
    while True:
        show(doc)
        if watched is None or _running_id(doc) != watched:
            return Watched(watched, doc, refreshes)
        if max_refreshes is not None and refreshes >= max_refreshes:
            return Watched(watched, doc, refreshes)
        sleep(interval)
        doc = read()
        refreshes += 1
