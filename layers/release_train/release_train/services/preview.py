"""What would ride: the part of PlanRelease that decides which services a train takes and why it would not leave,
with no side effect. PlanService calls `what_rides` inside its release; `trainctl plan` calls it (and the read-only
checks below) to preview a train without starting one, so both apply the same rules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from release_train.adapters.sources import SourceRejected, describe
from release_train.domain.fleet import Fleet, Source
from release_train.domain.live import UNKNOWN, Live
from release_train.domain.release import Change, ExecutionInput, select_services
from release_train.services.context import iso
from release_train.services.ports import SourcesPort


class BaselinePort(Protocol):
    """The ledger reads that decide what changed."""

    def baseline(self, fleet: str) -> tuple[str | None, dict[str, str]]: ...
    def live(self, fleet: str) -> dict[str, dict[str, Live]]: ...


@dataclass(frozen=True)
class Riding:
    changes: list[Change]  # what would ride, in fleet order
    heads: dict[str, str]  # every service's branch head
    compared: dict[str, str]  # what each head is compared with: what the last stage runs, else the baseline
    baseline_id: str | None  # the last good release


def service_on(fleet: Fleet, source: str) -> str:
    """The first service (in fleet order) whose source `describe`s as `source`: who a source error is about."""
    return next((s.name for s in fleet.services if describe(s.source) == source), "?")


def unknown_services(fleet: Fleet, request: ExecutionInput) -> list[str]:
    names = {s.name for s in fleet.services}
    return [n for n in request.services if n not in names] if isinstance(request.services, tuple) else []


def heads(fleet: Fleet, sources: SourcesPort, within: float | None = None) -> dict[str, str]:
    """Each distinct (source, branch) is asked once, all in one call (the adapter batches and overlaps them).
    A permanent error names the first service on the source that failed, and the source."""
    distinct: list[Source] = list(dict.fromkeys(s.source for s in fleet.services))
    try:
        resolved = sources.heads(distinct, within)
    except SourceRejected as exc:
        raise SourceRejected(exc.source, f"service {service_on(fleet, exc.source)}: {exc.reason}") from None
    return {service.name: resolved[service.source] for service in fleet.services}


def what_rides(
    fleet: Fleet, request: ExecutionInput, sources: SourcesPort, ledger: BaselinePort, within: float | None = None
) -> Riding:
    """Heads first (a source that fails fails before the ledger is read), then what they are compared with."""
    found = heads(fleet, sources, within)
    baseline_id, baseline = ledger.baseline(fleet.fleet)
    # What changed is what differs from what the last stage runs now (as observed), not from the last release
    # that succeeded: after a partial deploy or a rollback they differ. Unknown counts as changed.
    last = ledger.live(fleet.fleet).get(fleet.stages[-1].name, {})
    compared = {**baseline, **{s: (r.commit if r.known else UNKNOWN) for s, r in last.items()}}
    changes, _ = select_services(fleet, request, found, compared)
    return Riding(changes, found, compared, baseline_id)


def freeze_reason(fleet: Fleet, now: datetime) -> str | None:
    """Why a train planned at `now` is BLOCKED by a freeze window (PlanRelease's reason), or None."""
    frozen = fleet.freeze_at(now)
    if frozen is None:
        return None
    return f"freeze window '{frozen.reason}' until {iso(frozen.end)}; next open time {iso(fleet.next_open_time(now))}"


def nothing_reason(fleet: Fleet, baseline_id: str | None) -> str:
    """Why a train with no changes ends NOTHING_TO_RELEASE (PlanRelease's reason)."""
    return (
        f"no service's head differs from what {fleet.stages[-1].name} runs (last release {baseline_id or 'none yet'})"
    )
