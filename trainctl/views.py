"""What the operator commands read from the ledger (docs/ledger.md), as JSON-ready documents, and how they print.

Builders take the ledger and `now` and return plain dicts (the `--output json` document); renderers print one such
document with rich, every value from the ledger as plain text (never markup)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from rich.table import Table
from rich.text import Text

from release_train.adapters.ledger import Ledger, ReleaseRecord
from release_train.domain.release import Status
from trainctl.convention import AWS, CommandError, out, text

# --- reading ---------------------------------------------------------------------------------------------------------


def _at(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def _seconds(start: str | None, end: str | None, now: datetime) -> int | None:
    began, ended = _at(start), _at(end) or now
    return int((ended - began).total_seconds()) if began else None


def duration_text(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    hours, rest = divmod(max(seconds, 0), 3600)
    minutes = rest // 60
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if days else f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


def release_summary(record: ReleaseRecord, now: datetime) -> dict[str, Any]:
    return {
        "release_id": record.release_id,
        "fleet": record.fleet,
        "status": record.status.value,
        "reason": record.reason,
        "created_at": record.created_at,
        "ended_at": record.ended_at,
        "duration_s": _seconds(record.created_at, record.ended_at, now),
        "requested_by": record.requested_by,
        "execution_arn": record.execution_arn,
        "failed_state": record.failed_state,
        "fleet_version": record.fleet_version,
    }


def find_release(ledger: Ledger, release_id: str, table: str) -> ReleaseRecord:
    record = ledger.release(release_id)
    if record is None:
        raise CommandError(
            f"release {release_id} is not in the ledger (table {table}): check the id (trainctl history)", AWS
        )
    return record


def _pinned(ledger: Ledger, release_id: str) -> dict[str, Any]:
    try:
        return ledger.pinned_fleet(release_id)
    except (KeyError, RuntimeError, ValueError):
        return {}


def _approvers(pinned: dict[str, Any], stage: str) -> list[str]:
    for item in pinned.get("stages") or []:
        if isinstance(item, dict) and item.get("name") == stage:
            named = (item.get("approval") or {}).get("approvers") or []
            return [str(a) for a in (named or (pinned.get("defaults") or {}).get("approvers") or [])]
    return []


def _bake(pinned: dict[str, Any], stage: str) -> timedelta | None:
    from pydantic import TypeAdapter, ValidationError

    for item in pinned.get("stages") or []:
        if isinstance(item, dict) and item.get("name") == stage and item.get("bake") is not None:
            try:
                return TypeAdapter(timedelta).validate_python(item["bake"])
            except ValidationError:
                return None
    return None


def progress(ledger: Ledger, record: ReleaseRecord, now: datetime) -> dict[str, Any]:
    """Per stage, per wave: builds running/succeeded/failed; the approval, the bake, the gate; where the train is."""
    rid = record.release_id
    pinned = _pinned(ledger, rid)
    manifest = ledger.manifest(rid)
    per_wave = Counter(entry.wave for entry in manifest)
    waves = sorted(per_wave)
    builds = ledger.builds(rid)
    events = ledger.events(rid)
    gates = {gate["stage"]: gate for gate in ledger.gates(rid)}
    stages = record.stages or [str(s.get("name")) for s in pinned.get("stages") or [] if isinstance(s, dict)]
    started = {(e["detail"].get("stage"), e["detail"].get("wave")) for e in events if e["kind"] == "wave_started"}
    recorded: dict[tuple[Any, Any], str] = {
        (e["detail"].get("stage"), e["detail"].get("wave")): e["at"] for e in events if e["kind"] == "wave_recorded"
    }
    blocked = {(e["detail"].get("stage"), e["detail"].get("wave")) for e in events if e["kind"] == "wave_blocked"}
    current = next((e["detail"]["stage"] for e in reversed(events) if e["detail"].get("stage") in stages), None)

    stage_docs: list[dict[str, Any]] = []
    for stage in stages:
        wave_docs = []
        for wave in waves:
            done = [b for b in builds if b.stage == stage and b.wave == wave]
            failed = sorted(b.service for b in done if b.status != "SUCCEEDED")
            key = (stage, wave)
            state = (
                "done"
                if key in recorded
                else "building"
                if key in started
                else "blocked"
                if key in blocked
                else "pending"
            )
            wave_docs.append(
                {
                    "wave": wave,
                    "services": per_wave[wave],
                    "state": state,
                    "running": per_wave[wave] - len(done) if state == "building" else 0,
                    "succeeded": len(done) - len(failed),
                    "failed": len(failed),
                    "failed_services": failed,
                }
            )
        approval = ledger.approval(rid, stage)
        approval_doc = (
            {
                "status": approval.status,
                "requested_at": approval.requested_at,
                "decided_by": approval.decided_by,
                "identity": approval.identity,
                "reason": approval.reason,
                "approvers": _approvers(pinned, stage),
            }
            if approval
            else None
        )
        gate = gates.get(stage)
        bake_doc = None
        stage_recorded = [recorded[(stage, w)] for w in waves if (stage, w) in recorded]
        if waves and len(stage_recorded) == len(waves) and gate is None and record.status is Status.RUNNING:
            bake = _bake(pinned, stage)
            began = _at(max(stage_recorded))
            if bake is not None and began is not None:
                ends = began + bake
                bake_doc = {
                    "started_at": began.isoformat(),
                    "ends_at": ends.isoformat(),
                    "left_s": max(0, int((ends - now).total_seconds())),
                }
        if approval and approval.status == "PENDING":
            state = "waiting for approval"
        elif gate is not None:
            state = f"gate {gate['verdict']}"
        elif bake_doc is not None:
            state = "testing and baking"
        elif any(w["state"] == "building" for w in wave_docs):
            state = "building wave " + ", ".join(str(w["wave"]) for w in wave_docs if w["state"] == "building")
        elif any(w["state"] == "blocked" for w in wave_docs):
            state = "blocked"
        elif any(w["state"] == "done" for w in wave_docs):
            state = "between waves"
        else:
            state = "not started"
        stage_docs.append(
            {
                "name": stage,
                "state": state,
                "waves": wave_docs,
                "approval": approval_doc,
                "bake": bake_doc,
                "gate": {"verdict": gate["verdict"], "reasons": gate["reasons"]} if gate else None,
            }
        )
    current_doc = next((s for s in stage_docs if s["name"] == current), None)
    building = [w["wave"] for w in (current_doc or {}).get("waves", []) if w["state"] in {"building", "done"}]
    return {
        "stage": current,
        "wave": max(building) if building else None,
        "services": len(manifest),
        "stages": stage_docs,
        "pending_approvals": [
            {"stage": s["name"], "requested_at": s["approval"]["requested_at"], "approvers": s["approval"]["approvers"]}
            for s in stage_docs
            if s["approval"] and s["approval"]["status"] == "PENDING"
        ],
    }


def live_doc(ledger: Ledger, fleet: str) -> dict[str, list[dict[str, Any]]]:
    return {
        stage: [
            {
                "service": r.service,
                "commit": r.commit,
                "release_id": r.release_id,
                "how": r.how,
                "previous_commit": r.previous_commit,
                "observed_at": r.observed_at,
            }
            for r in sorted(records.values(), key=lambda r: r.service)
        ]
        for stage, records in ledger.live(fleet).items()
    }


def status_doc(ledger: Ledger, fleet: str, now: datetime, next_train: dict[str, Any]) -> dict[str, Any]:
    lock = ledger.lock(fleet)
    running = None
    if lock is not None:
        record = ledger.release(lock.release_id)
        if record is not None:
            running = {**release_summary(record, now), **progress(ledger, record, now)}
    latest = ledger.list_releases(fleet, 2)
    last = next((r for r in latest if running is None or r.release_id != running["release_id"]), None)
    return {
        "fleet": fleet,
        "now": now.isoformat(),
        "lock": {"release_id": lock.release_id, "execution_arn": lock.execution_arn, "acquired_at": lock.acquired_at}
        if lock
        else None,
        "running": running,
        "last_release": release_summary(last, now) if last else None,
        "holds": [
            {"scope": h.scope, "reason": h.reason, "by": h.by, "identity": h.identity} for h in ledger.holds(fleet)
        ],
        "live": live_doc(ledger, fleet),
        "next_train": next_train,
    }


def history_doc(ledger: Ledger, fleet: str, limit: int, now: datetime) -> dict[str, Any]:
    return {"fleet": fleet, "releases": [release_summary(r, now) for r in ledger.list_releases(fleet, limit)]}


def show_doc(ledger: Ledger, record: ReleaseRecord, now: datetime) -> dict[str, Any]:
    rid = record.release_id
    manifest = ledger.manifest(rid)
    stages = progress(ledger, record, now)
    stages_order = {s["name"]: i for i, s in enumerate(stages["stages"])}
    return {
        "release": release_summary(record, now),
        "manifest": [
            {
                "service": e.service,
                "wave": e.wave,
                "commit": e.commit,
                "previous_commit": e.previous_commit,
                "source": e.source,
            }
            for e in sorted(manifest, key=lambda e: (e.wave, e.service))
        ],
        "waves": [
            {"wave": wave, "services": sorted(e.service for e in manifest if e.wave == wave)}
            for wave in sorted({e.wave for e in manifest})
        ],
        "stages": stages["stages"],
        "builds": [
            {
                "stage": b.stage,
                "wave": b.wave,
                "service": b.service,
                "status": b.status,
                "build_id": b.build_id,
                "commit": b.commit,
                "error": b.error,
            }
            for b in sorted(ledger.builds(rid), key=lambda b: (stages_order.get(b.stage, 99), b.wave, b.service))
        ],
        "gates": ledger.gates(rid),
        # The task token stays out: it is the capability to answer the approval.
        "approvals": [{"stage": s["name"], **s["approval"]} for s in stages["stages"] if s["approval"]],
        "aliases": [
            {
                "stage": m.stage,
                "wave": m.wave,
                "service": m.service,
                "function": m.function,
                "alias": m.alias,
                "before": m.before,
                "after": m.after,
                "rolled_back": m.rolled_back,
            }
            for m in ledger.alias_moves(rid)
        ],
        "events": ledger.events(rid),
    }


# --- printing --------------------------------------------------------------------------------------------------------

_STATUS_STYLE = {"SUCCEEDED": "green", "RUNNING": "cyan", "NOTHING_TO_RELEASE": "dim"}


def _status(value: str) -> Any:
    return text(value, _STATUS_STYLE.get(value, "red"))


def _release_line(doc: dict[str, Any]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_row(text("release", "bold"), text(doc["release_id"]), _status(doc["status"]))
    grid.add_row(text("reason", "bold"), text(doc["reason"]))
    grid.add_row(text("started", "bold"), text(f"{doc['created_at']} by {doc['requested_by'] or '-'}"))
    ended = doc["ended_at"] or "running"
    grid.add_row(text("ended", "bold"), text(f"{ended} ({duration_text(doc['duration_s'])})"))
    grid.add_row(text("execution", "bold"), text(doc["execution_arn"]))
    return grid


def _stages_table(stages: list[dict[str, Any]]) -> Table:
    table = Table(
        "stage",
        "stage state",
        "wave",
        "wave state",
        "running",
        "succeeded",
        "failed",
        title="stages",
        title_justify="left",
    )
    for stage in stages:
        for i, wave in enumerate(stage["waves"] or [{"wave": "-", "state": "-", "running": 0, "succeeded": 0}]):
            failed = wave.get("failed_services") or []
            table.add_row(
                text(stage["name"]) if i == 0 else Text(""),
                text(stage["state"]) if i == 0 else Text(""),
                text(wave["wave"]),
                text(wave["state"]),
                text(wave["running"]),
                text(wave["succeeded"]),
                text(
                    f"{len(failed)}: {', '.join(failed[:5])}{' …' if len(failed) > 5 else ''}" if failed else 0,
                    "red" if failed else "",
                ),
            )
    return table


def _approvals_lines(release_id: str, stages: list[dict[str, Any]]) -> None:
    for stage in stages:
        approval, bake, gate = stage["approval"], stage["bake"], stage["gate"]
        if approval and approval["status"] == "PENDING":
            who = ", ".join(approval["approvers"]) or "the stage's approvers"
            out.print(
                text(
                    f"approval {stage['name']}: PENDING since {approval['requested_at']}; may answer: {who} "
                    f"(trainctl approve|reject {release_id} --stage {stage['name']} --reason …)",
                    "yellow",
                ),
                soft_wrap=True,
            )
        elif approval:
            out.print(
                text(
                    f"approval {stage['name']}: {approval['status']} by {approval['decided_by'] or '-'} "
                    f"({approval['identity'] or 'no identity recorded'}): {approval['reason'] or '-'}"
                ),
                soft_wrap=True,
            )
        if bake:
            out.print(text(f"bake {stage['name']}: until {bake['ends_at']} ({duration_text(bake['left_s'])} left)"))
        if gate:
            reasons = "; ".join(gate["reasons"]) or "all evidence good"
            out.print(text(f"gate {stage['name']}: {gate['verdict']} — {reasons}"), soft_wrap=True)


def render_status(doc: dict[str, Any]) -> None:
    running = doc["running"]
    if running:
        out.print(_release_line(running))
        where = running["stage"] or "planning"
        wave = f", wave {running['wave']}" if running["wave"] is not None else ""
        out.print(text(f"{running['services']} services; now in {where}{wave}"), soft_wrap=True)
        out.print(_stages_table(running["stages"]))
        _approvals_lines(running["release_id"], running["stages"])
    else:
        out.print(text(f"fleet {doc['fleet']}: no train running"))
        last = doc["last_release"]
        if last:
            out.print(
                text(
                    f"last release {last['release_id']}: {last['status']} — {last['reason']} "
                    f"({duration_text(last['duration_s'])})"
                ),
                soft_wrap=True,
            )
    for hold in doc["holds"]:
        out.print(
            text(f"hold on {hold['scope']} by {hold['by']} ({hold['identity'] or '-'}): {hold['reason']}", "yellow"),
            soft_wrap=True,
        )
    if doc["live"]:
        table = Table("stage", "services", "runs", "unknown", title="live", title_justify="left")
        for stage, records in doc["live"].items():
            unknown = sorted(r["service"] for r in records if r["commit"] == "unknown")
            releases = Counter(r["release_id"] or "?" for r in records if r["commit"] != "unknown")
            table.add_row(
                text(stage),
                text(len(records)),
                text(", ".join(f"{n} from {rid}" for rid, n in releases.most_common()) or "-"),
                text(", ".join(unknown[:10]) + (" …" if len(unknown) > 10 else "") or "-", "red" if unknown else ""),
            )
        out.print(table)
    nxt = doc["next_train"]
    if nxt.get("next_fire"):
        out.print(
            text(f"next train: {nxt['next_fire']} ({nxt['expression']} {nxt['timezone']})", "bold"), soft_wrap=True
        )
    else:
        out.print(text(f"next train: unknown — {nxt.get('note') or '-'}"), soft_wrap=True)


def render_history(doc: dict[str, Any]) -> None:
    table = Table("release", "status", "started", "duration", "requested by", "reason", title=f"fleet {doc['fleet']}")
    for r in doc["releases"]:
        table.add_row(
            text(r["release_id"]),
            _status(r["status"]),
            text(r["created_at"]),
            text(duration_text(r["duration_s"])),
            text(r["requested_by"]),
            text(r["reason"][:120]),
        )
    out.print(table)


def render_show(doc: dict[str, Any]) -> None:
    out.print(_release_line(doc["release"]))
    manifest = Table("wave", "service", "from", "to", "source", title="manifest", title_justify="left")
    for e in doc["manifest"]:
        manifest.add_row(
            text(e["wave"]),
            text(e["service"]),
            text((e["previous_commit"] or "-")[:12]),
            text(e["commit"][:12]),
            text(e["source"]),
        )
    out.print(manifest)
    out.print(_stages_table(doc["stages"]))
    _approvals_lines(doc["release"]["release_id"], doc["stages"])
    if doc["builds"]:
        builds = Table("stage", "wave", "service", "status", "build", "error", title="builds", title_justify="left")
        for b in doc["builds"]:
            builds.add_row(
                text(b["stage"]),
                text(b["wave"]),
                text(b["service"]),
                text(b["status"], "green" if b["status"] == "SUCCEEDED" else "red"),
                text(b["build_id"]),
                text((b["error"] or "")[:80]),
            )
        out.print(builds)
    if doc["aliases"]:
        aliases = Table("stage", "wave", "function", "alias", "before", "after", title="aliases", title_justify="left")
        for m in doc["aliases"]:
            aliases.add_row(
                text(m["stage"]),
                text(m["wave"]),
                text(m["function"]),
                text(m["alias"]),
                text(m["before"]),
                text(f"{m['after'] or '-'}{' (rolled back)' if m['rolled_back'] else ''}"),
            )
        out.print(aliases)
    events = Table("at", "event", "detail", title="events", title_justify="left")
    for e in doc["events"]:
        detail = ", ".join(f"{k}={v}" for k, v in e["detail"].items())
        events.add_row(text(e["at"]), text(e["kind"]), text(detail[:160]))
    out.print(events)
