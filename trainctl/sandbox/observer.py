"""Lets the sandbox watch an execution's history as it is written (people in scenarios react to states)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

# (event type, event details, execution arn or None)
observers: list[Callable[[str, dict[str, Any], str | None], None]] = []
_original_add_event = EventManager.add_event


def _add_event(
    self: EventManager, context: Any, event_type: Any, event_details: Any = None, *args: Any, **kwargs: Any
) -> int:
    event_id: int = _original_add_event(self, context, event_type, event_details, *args, **kwargs)
    if observers:
        details = dict(event_details) if event_details else {}
        name = event_type.value if hasattr(event_type, "value") else str(event_type)
        arn = getattr(self, "sandbox_execution_arn", None)
        for observer in list(observers):
            observer(name, details, arn)
    return event_id


def install() -> None:
    EventManager.add_event = _add_event
