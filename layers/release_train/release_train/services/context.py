"""Shared by the use cases: a release with the fleet it pinned, notifications, release notes."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from release_train.adapters.ledger import Ledger, ReleaseRecord
from release_train.domain.fleet import Fleet, utc
from release_train.domain.release import ManifestEntry, blocking_holds
from release_train.events import InvalidEvent
from release_train.services.ports import NotifierPort


def iso(moment: datetime) -> str:
    return utc(moment).isoformat(timespec="seconds")


class ReleaseContext:
    """A release and the fleet pinned when it was planned (later edits to fleet.yaml do not change a running train)."""

    def __init__(self, ledger: Ledger, release_id: str) -> None:
        record = ledger.release(release_id)
        if record is None:
            raise KeyError(f"release {release_id} is not in the ledger")
        self.record: ReleaseRecord = record
        pinned = ledger.pinned_fleet(release_id)
        self.fleet: Fleet = Fleet.model_validate(pinned)
        self.manifest: list[ManifestEntry] = ledger.manifest(release_id)

    def stage_index(self, stage: str) -> int:
        return [s.name for s in self.fleet.stages].index(stage)

    def require_stage(self, stage: str, event: str, field: str = "stage") -> None:
        """An event naming a stage the release's pinned fleet does not have is refused before anything is written."""
        names = [s.name for s in self.fleet.stages]
        if stage not in names:
            where = f"release {self.record.release_id} has stages {', '.join(names)}"
            raise InvalidEvent(event, [f"{field}: unknown stage {stage!r} ({where})"])


# A notification lists at most this many lines (most are one per service) and counts the rest: 2,000 services would
# be ~0.5 MB of JSON, over SNS's 256 KB message limit and far over a chat webhook's 4,000 characters (the notifier
# adapter caps both; this keeps what people read short). The ledger keeps every one.
NOTIFY_LINES = 20
LINE_CHARS = 300  # a line (or the reason) longer than this is cut: a reason can name every service of the fleet


def manifest_item(release_id: str) -> str:
    """Where a release's full service list is: the manifest, one item per service (commit, previous commit, wave)."""
    return f"ledger items PK=RELEASE#{release_id}, SK=SVC#<service>"


def live_items(release_id: str, fleet: str) -> str:
    """Where what runs after a release ended is, per service: its `live_after_end` event and the LIVE# items."""
    return (
        f"ledger item PK=RELEASE#{release_id}, SK=EVENT#… of kind live_after_end, "
        f"and PK=FLEET#{fleet}, SK=LIVE#<stage>#<service>"
    )


def notify(
    notifier: NotifierPort, fleet: Fleet | None, subject: str, body: dict[str, Any], full: str | None = None
) -> None:
    """Send `body` summarised: its `lines` cut to NOTIFY_LINES, a last line saying how many more and where they all
    are (`full`; by default the release's manifest in the ledger), each line and the reason cut to LINE_CHARS."""
    notifier.send(subject, summarised(body, full), fleet.notifications.webhook_secret if fleet else None)


def summarised(body: dict[str, Any], full: str | None = None) -> dict[str, Any]:
    out = dict(body)
    if isinstance(out.get("reason"), str):
        out["reason"] = _clip(out["reason"])
    lines = [_clip(str(line)) for line in body.get("lines", [])]
    if "lines" in body:
        out["lines"] = lines[:NOTIFY_LINES]
    hidden = len(lines) - NOTIFY_LINES
    if hidden > 0:
        release_id = body.get("release_id")
        where = full or (manifest_item(release_id) if release_id else "the release ledger")
        out["lines"].append(f"... and {hidden} more (all {len(lines)}: {where})")
        out["full_detail"] = where
    return out


def _clip(text: str) -> str:
    return text if len(text) <= LINE_CHARS else f"{text[:LINE_CHARS]}... (cut; the ledger has it whole)"


def release_notes(ctx: ReleaseContext) -> list[str]:
    lines = []
    for e in sorted(ctx.manifest, key=lambda m: (m.wave, m.service)):
        since = e.previous_commit[:12] if e.previous_commit else "first release"
        lines.append(f"{e.service}: {since}..{e.commit[:12]} ({e.source}, wave {e.wave})")
    return lines


def guard(ctx: ReleaseContext, holds: list[Any], now: datetime, what: str) -> str | None:
    """Why `what` (a stage being entered, a wave starting) must not happen now: a hold on the fleet or on a riding
    service, or a freeze window. None when it may."""
    riding = {e.service for e in ctx.manifest}
    blocking = blocking_holds(holds, riding)
    if blocking:
        hold = blocking[0]
        target = "the fleet" if hold.scope == "*" else hold.scope
        return f"{what} not started: hold on {target} by {hold.by}: {hold.reason}"
    frozen = ctx.fleet.freeze_at(now)
    if frozen is not None:
        return f"{what} not started: freeze window '{frozen.reason}' until {iso(frozen.end)}"
    return None


def cause_text(cause: Any) -> str:
    """Lambda errors arrive as a JSON cause with errorMessage; builds as the build JSON. Keep it readable and short."""
    if not isinstance(cause, str):
        return str(cause or "")
    try:
        parsed = json.loads(cause)
    except ValueError:
        return cause[:1000]
    if isinstance(parsed, dict):
        if "errorMessage" in parsed:
            return str(parsed["errorMessage"])[:1000]
        if "BuildStatus" in parsed or "Id" in parsed:
            return f"build {parsed.get('Id')} {parsed.get('BuildStatus')}"
    return cause[:1000]


def build_status(result: dict[str, Any]) -> str:
    """A failed .sync build arrives as status FAILED with the build as its cause: keep CodeBuild's own verdict
    (TIMED_OUT, FAULT, STOPPED) so the ledger and the reason say what really happened."""
    status = str(result.get("status", "FAILED"))
    if status == "SUCCEEDED":
        return status
    build = build_from_cause(result.get("cause"))
    return str(build.get("BuildStatus") or build.get("buildStatus") or status) if build else status


def build_from_cause(cause: Any) -> dict[str, Any] | None:
    try:
        build = json.loads(cause) if isinstance(cause, str) else None
    except ValueError:
        return None
    if isinstance(build, dict):
        nested = build.get("Build")
        return nested if isinstance(nested, dict) else build
    return None


def build_id_from_cause(cause: Any) -> str | None:
    """A failed .sync build's cause is the build as JSON; keep its id for the operator."""
    try:
        build = json.loads(cause) if isinstance(cause, str) else None
    except ValueError:
        return None
    if isinstance(build, dict):
        value = build.get("Id") or build.get("id") or build.get("Build", {}).get("Id")
        return str(value) if value else None
    return None
