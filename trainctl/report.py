"""`trainctl report RELEASE --html FILE`: one self-contained HTML page per release (inline CSS and SVG, nothing
fetched), built from the document `trainctl show` prints (views.show_doc) plus what only AWS remembers: each build's
start and end (CodeBuild BatchGetBuilds) and the canaries with their hook results (CodeDeploy).

Every text from the ledger or AWS goes through `html.escape`; the approval's task token is never in the document."""

from __future__ import annotations

import html
import json
import string
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

from trainctl.cli import Where, _target_options, main
from trainctl.convention import USAGE, CommandError, emit, fail, guarded, note, out, output_option, text
from trainctl.views import duration_text

# --- reading what the ledger does not keep -------------------------------------------------------------------------

BATCH_GET_BUILDS_MAX = 100  # BatchGetBuilds: "ids": 1 to 100 items (botocore codebuild model, BuildIds)
BATCH_GET_TARGETS_MAX = 25  # BatchGetDeploymentTargets: "The maximum number of targets that can be returned is 25."
_SECRET_KEYS = {"task_token", "taskToken", "TaskToken"}


def _at(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _iso(value: Any) -> str | None:
    moment = _at(value)
    return moment.isoformat() if moment else None


def build_times(codebuild: Any, build_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """build id -> started_at, ended_at, duration_s (BatchGetBuilds `builds[].startTime/endTime`; a build still
    running has no endTime). Ids CodeBuild no longer knows come back in `buildsNotFound` and are left out."""
    ids = sorted(set(build_ids))
    found: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), BATCH_GET_BUILDS_MAX):
        for build in codebuild.batch_get_builds(ids=ids[i : i + BATCH_GET_BUILDS_MAX]).get("builds", []):
            start, end = _at(build.get("startTime")), _at(build.get("endTime"))
            found[str(build["id"])] = {
                "started_at": _iso(start),
                "ended_at": _iso(end),
                "duration_s": int((end - start).total_seconds()) if start and end else None,
            }
    return found


def _lifecycle_event(event: dict[str, Any]) -> dict[str, Any]:
    diagnostics = event.get("diagnostics") or {}
    return {
        "name": event.get("lifecycleEventName"),
        "status": event.get("status"),
        "started_at": _iso(event.get("startTime")),
        "ended_at": _iso(event.get("endTime")),
        "message": diagnostics.get("message"),
    }


def _lambda_targets(codedeploy: Any, deployment_id: str) -> list[dict[str, Any]]:
    """ListDeploymentTargets then BatchGetDeploymentTargets (25 at a time): each target's `lambdaTarget`, with
    `lambdaFunctionInfo` (function, alias, versions) and `lifecycleEvents` (BeforeAllowTraffic, AllowTraffic,
    AfterAllowTraffic: the hooks' reported results). API_BatchGetDeploymentTargets.html, API_LambdaTarget.html."""
    ids: list[str] = []
    for page in codedeploy.get_paginator("list_deployment_targets").paginate(deploymentId=deployment_id):
        ids.extend(page.get("targetIds", []))
    targets: list[dict[str, Any]] = []
    for i in range(0, len(ids), BATCH_GET_TARGETS_MAX):
        answer = codedeploy.batch_get_deployment_targets(
            deploymentId=deployment_id, targetIds=ids[i : i + BATCH_GET_TARGETS_MAX]
        )
        targets.extend(t["lambdaTarget"] for t in answer.get("deploymentTargets", []) if t.get("lambdaTarget"))
    return targets


def read_canaries(
    codedeploy: Any, functions: set[str], start: datetime, end: datetime, notes: list[str]
) -> list[dict[str, Any]]:
    """The CodeDeploy deployments of the release's functions (its alias journal) created while it ran. A deployment's
    hook results come from its Lambda target; where those cannot be read, the function is found from the AppSpec
    (the hooks' own reader) and the hooks are reported unknown, with why in `notes`."""
    from botocore.exceptions import BotoCoreError, ClientError

    from release_train.adapters.codedeploy import CodeDeployDeployments
    from release_train.adapters.hook_clients import LazyClient
    from release_train.domain.errors import InvalidInput
    from release_train.domain.hook_targets import LambdaTarget

    if not functions:
        return []
    ids: list[str] = []
    pages = codedeploy.get_paginator("list_deployments").paginate(createTimeRange={"start": start, "end": end})
    for page in pages:
        ids.extend(page.get("deployments", []))
    canaries: list[dict[str, Any]] = []
    unreadable: set[str] = set()
    for deployment_id in ids:
        info = codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
        created = _at(info.get("createTime"))
        # Filter again: createTimeRange is what AWS honours; an emulator that ignores it must not widen the report.
        if info.get("computePlatform") != "Lambda" or created is None or not start <= created <= end:
            continue
        hooks: list[dict[str, Any]] | None
        try:
            if unreadable:  # one refusal is enough: don't retry a call this endpoint does not answer per deployment
                raise _Unreadable()
            targets = _lambda_targets(codedeploy, deployment_id)
            named = [(t, t.get("lambdaFunctionInfo") or {}) for t in targets]
            pairs = [(t, f) for t, f in named if f.get("functionName") in functions]
            if not pairs:
                continue
            target, function = pairs[0]
            hooks = [_lifecycle_event(e) for e in target.get("lifecycleEvents") or []]
            where = {
                "function": function.get("functionName"),
                "alias": function.get("functionAlias"),
                "current_version": function.get("currentVersion"),
                "target_version": function.get("targetVersion"),
            }
        except (BotoCoreError, ClientError, _Unreadable) as exc:
            if not isinstance(exc, _Unreadable):
                unreadable.add(type(exc).__name__ if isinstance(exc, BotoCoreError) else _code(exc))
            try:
                appspec = CodeDeployDeployments(LazyClient("codedeploy", client=codedeploy)).target(deployment_id)
            except InvalidInput:
                continue  # an AppSpec the hooks could not read either: not one of the train's canaries
            if not isinstance(appspec, LambdaTarget) or appspec.function_name not in functions:
                continue
            hooks = None
            where = {
                "function": appspec.function_name,
                "alias": appspec.alias,
                "current_version": appspec.current_version,
                "target_version": appspec.target_version,
            }
        rollback = info.get("rollbackInfo") or {}
        error = info.get("errorInformation") or {}
        canaries.append(
            {
                "deployment_id": deployment_id,
                **where,
                "config": info.get("deploymentConfigName"),
                "status": info.get("status"),
                "created_at": _iso(info.get("createTime")),
                "completed_at": _iso(info.get("completeTime")),
                "error": f"{error.get('code')}: {error.get('message')}" if error else None,
                "rollback": rollback.get("rollbackMessage") or rollback.get("rollbackDeploymentId"),
                "hooks": hooks,
            }
        )
    if unreadable:
        notes.append(
            "CodeDeploy hook results not readable (ListDeploymentTargets/BatchGetDeploymentTargets: "
            f"{', '.join(sorted(unreadable))}): the canaries show their deployment status only"
        )
    return sorted(canaries, key=lambda c: (c["created_at"] or "", c["function"] or ""))


class _Unreadable(Exception):
    """The deployment targets were already refused once in this report."""


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code") or type(exc).__name__)


def _scrub(value: Any) -> Any:
    """Drop any task token wherever it hides: it is the capability to answer an approval."""
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if k not in _SECRET_KEYS}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def timeline(doc: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
    """Phases from the ledger's events, per stage: the approval wait, each wave (started -> recorded), tests and bake
    (the stage's last wave recorded -> its gate: the window EvaluateGate reads alarms over), the gate verdict."""
    release = doc["release"]
    finish = release["ended_at"] or now.isoformat()
    events = doc["events"]

    def first(kind: str, **match: Any) -> str | None:
        return next(
            (e["at"] for e in events if e["kind"] == kind and all(e["detail"].get(k) == v for k, v in match.items())),
            None,
        )

    phases: list[dict[str, Any]] = []
    for stage in doc["stages"]:
        name = stage["name"]
        approval = stage.get("approval")
        if approval:
            decided = first("approval_decided", stage=name)
            phases.append(
                {
                    "stage": name,
                    "kind": "approval",
                    "label": f"approval {approval['status']}",
                    "start": approval["requested_at"] or first("approval_requested", stage=name),
                    "end": decided or finish,
                    "state": approval["status"],
                }
            )
        recorded: list[str] = []
        clean = True
        for wave in stage["waves"]:
            started = first("wave_started", stage=name, wave=wave["wave"])
            if started is None:
                continue
            ended = first("wave_recorded", stage=name, wave=wave["wave"])
            if ended:
                recorded.append(ended)
            clean = clean and ended is not None and not wave["failed"]
            phases.append(
                {
                    "stage": name,
                    "kind": "wave",
                    "wave": wave["wave"],
                    "label": f"wave {wave['wave']}",
                    "start": started,
                    "end": ended or finish,
                    "state": "FAILED" if wave["failed"] else "done" if ended else "unfinished",
                }
            )
        gate_at = first("gate", stage=name)
        if recorded and clean and len(recorded) == len(stage["waves"]):
            phases.append(
                {
                    "stage": name,
                    "kind": "bake",
                    "label": "tests and bake",
                    "start": max(recorded),
                    "end": gate_at or finish,
                    "state": "done" if gate_at else "running" if release["status"] == "RUNNING" else "interrupted",
                }
            )
        if stage.get("gate") and gate_at:
            verdict = stage["gate"]["verdict"]
            phases.append(
                {"stage": name, "kind": "gate", "label": f"gate {verdict}", "start": gate_at, "end": gate_at}
                | {"state": verdict}
            )
    stage_of = {str(m["function"]): str(m["stage"]) for m in doc.get("aliases") or []}
    for canary in doc.get("canaries") or []:
        if canary.get("created_at"):
            phases.append(
                {
                    "stage": stage_of.get(str(canary["function"]), "-"),
                    "kind": "canary",
                    "label": str(canary["function"]),
                    "start": canary["created_at"],
                    "end": canary["completed_at"] or finish,
                    "state": canary["status"],
                }
            )
    return phases


def report_doc(
    show: dict[str, Any],
    times: dict[str, dict[str, Any]],
    canaries: list[dict[str, Any]] | None,
    notes: list[str],
    now: datetime,
) -> dict[str, Any]:
    """The show document, each build with its times, the canaries, the timeline's phases; no task token."""
    doc: dict[str, Any] = _scrub(show)
    doc["builds"] = [
        {**b, **times.get(str(b["build_id"]), {"started_at": None, "ended_at": None, "duration_s": None})}
        for b in doc["builds"]
    ]
    doc["canaries"] = canaries
    doc["timeline"] = timeline(doc, now)
    doc["notes"] = list(notes)
    doc["generated_at"] = now.isoformat()
    return doc


# --- the page ------------------------------------------------------------------------------------------------------


def e(value: object) -> str:
    """Escaped text for an element or an attribute value (quotes included)."""
    return html.escape("-" if value is None or value == "" else str(value), quote=True)


def _span(seconds: int | None) -> str:
    return "-" if seconds is None else f"{max(seconds, 0)}s" if seconds < 60 else duration_text(seconds)


def _between(start: str | None, end: str | None) -> int | None:
    began, ended = _at(start), _at(end)
    return int((ended - began).total_seconds()) if began and ended else None


def _status_class(status: object) -> str:
    words = str(status or "").upper().split()
    value = words[-1] if words else ""  # "gate PROMOTE", "waiting for approval": the last word says how it went
    if value in {"SUCCEEDED", "PROMOTE", "APPROVED", "DONE", "OK"}:
        return "ok"
    if value.isdigit() or value in {"RUNNING", "PENDING", "INPROGRESS", "IN_PROGRESS", "CREATED", "READY"}:
        return "run"
    if value in {"-", "", "NONE", "SKIPPED", "NOTHING_TO_RELEASE", "STARTED", "APPROVAL", "WAVES", "BAKING"}:
        return "dim"
    return "bad"


def _badge(status: object) -> str:
    return f'<span class="badge {_status_class(status)}">{e(status)}</span>'


def _table(
    headers: list[str], rows: list[tuple[dict[str, str], list[str]]], kind: str, empty: str = "none recorded"
) -> str:
    """rows: (data attributes, already-escaped cells)."""
    if not rows:
        return f'<p class="dim" data-kind="{e(kind)}-none">{e(empty)}</p>'
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = []
    for attrs, cells in rows:
        attributes = "".join(f' data-{k}="{e(v)}"' for k, v in attrs.items())
        body.append(f"<tr{attributes}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_COLOURS = {"approval": "#8e6bbf", "wave": "#3b7dd8", "bake": "#e0a030", "gate": "#2e9e5b", "canary": "#16a2a2"}


def _svg(doc: dict[str, Any]) -> str:
    """The timeline: one lane per stage and kind of phase, on a linear time axis from the release's start to its end
    (short phases get a minimum width so a 6-minute wave stays visible beside a 2-day bake)."""
    phases = [p for p in doc["timeline"] if _at(p["start"]) and _at(p["end"])]
    release = doc["release"]
    starts = [moment for p in phases if (moment := _at(p["start"])) is not None]
    t0 = _at(release["created_at"]) or min(starts, default=None)
    t1 = _at(release["ended_at"]) or _at(doc["generated_at"])
    if not phases or t0 is None or t1 is None:
        return '<p class="dim" data-kind="timeline-none">no phase recorded yet</p>'
    t1 = max([t1, *(_at(p["end"]) or t1 for p in phases)])
    span = max((t1 - t0).total_seconds(), 1.0)
    left, width, lane_h = 170, 1000, 26
    lanes: list[tuple[str, str]] = []
    for p in phases:
        lane = (p["stage"], "gate" if p["kind"] == "gate" else p["kind"])
        if p["kind"] == "gate":
            lane = (p["stage"], "bake")  # the verdict sits at the end of the bake it judged
        if lane not in lanes:
            lanes.append(lane)
    height = 40 + lane_h * len(lanes) + 30

    def x(moment: datetime | None) -> float:
        return left + width * ((moment or t0) - t0).total_seconds() / span

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="release timeline" '
        f'width="{left + width + 20}" height="{height}" viewBox="0 0 {left + width + 20} {height}">'
    ]
    for i, (stage, kind) in enumerate(lanes):
        y = 30 + i * lane_h
        parts.append(f'<text x="6" y="{y + 16}" class="lane">{e(stage)} · {e(kind)}</text>')
        parts.append(
            f'<line x1="{left}" y1="{y + lane_h - 2}" x2="{left + width}" y2="{y + lane_h - 2}" class="grid"/>'
        )
    for p in phases:
        lane = (p["stage"], "bake" if p["kind"] == "gate" else p["kind"])
        y = 30 + lanes.index(lane) * lane_h
        x0, x1 = x(_at(p["start"])), x(_at(p["end"]))
        title = f"{p['stage']} {p['label']}: {p['start']} → {p['end']} ({p['state']})"
        attrs = f'data-kind="timeline-{e(p["kind"])}" data-stage="{e(p["stage"])}" data-state="{e(p["state"])}"'
        if p["kind"] == "wave":
            attrs += f' data-wave="{e(p["wave"])}"'
        if p["kind"] == "gate":
            cx, cy = x1, y + 11
            colour = _COLOURS["gate"] if p["state"] == "PROMOTE" else "#c0392b"
            parts.append(
                f'<g {attrs}><title>{e(title)}</title><polygon points="{cx:.1f},{cy - 8} {cx + 8:.1f},{cy} '
                f'{cx:.1f},{cy + 8} {cx - 8:.1f},{cy}" fill="{colour}"/></g>'
            )
            continue
        failed = str(p["state"]).upper() in {"FAILED", "STOPPED", "REJECTED", "TIMED_OUT", "BLOCK"}
        colour = "#c0392b" if failed else _COLOURS[p["kind"]]
        w = max(x1 - x0, 4.0)
        label = f'<text x="{x0 + 3:.1f}" y="{y + 15}" class="bar">{e(p["label"])}</text>' if w > 60 else ""
        parts.append(
            f'<g {attrs}><title>{e(title)}</title><rect x="{x0:.1f}" y="{y + 3}" width="{w:.1f}" height="18" '
            f'rx="3" fill="{colour}"/>{label}</g>'
        )
    axis_y = 30 + lane_h * len(lanes) + 14
    parts.append(f'<text x="{left}" y="{axis_y}" class="axis">{e(t0.isoformat())}</text>')
    parts.append(f'<text x="{left + width}" y="{axis_y}" class="axis" text-anchor="end">{e(t1.isoformat())}</text>')
    days = int(span // 86400)
    for d in range(1, days + 1):
        tick = x(t0 + timedelta(days=d))
        parts.append(f'<line x1="{tick:.1f}" y1="24" x2="{tick:.1f}" y2="{axis_y - 12}" class="tick"/>')
        parts.append(f'<text x="{tick:.1f}" y="20" class="axis" text-anchor="middle">+{d}d</text>')
    parts.append("</svg>")
    return "".join(parts)


def _who(detail: dict[str, Any]) -> str:
    names = [str(detail[k]) for k in ("by", "requested_by") if detail.get(k)]
    if detail.get("identity"):
        names.append(f"({detail['identity']})")
    return " ".join(names)


def _evidence(gate: dict[str, Any]) -> str:
    evidence = gate.get("evidence") or {}
    parts = []
    reasons = gate.get("reasons") or []
    parts.append(
        "<ul class='reasons'>" + "".join(f"<li data-kind='gate-reason'>{e(r)}</li>" for r in reasons) + "</ul>"
        if reasons
        else "<p>all evidence good</p>"
    )
    tests = evidence.get("tests")
    if tests:
        arns = "".join(f"<li><code>{e(a)}</code></li>" for a in tests.get("report_arns") or [])
        parts.append(
            f"<p data-kind='tests'>tests: {e(tests.get('passed'))} passed, {e(tests.get('failed'))} failed of "
            f"{e(tests.get('total'))}</p><ul>{arns}</ul>"
        )
    elif evidence.get("tests_expected"):
        parts.append("<p data-kind='tests' class='bad'>tests expected, no report read</p>")
    alarms = evidence.get("alarms")
    if alarms:
        parts.append(
            _table(
                ["alarm", "state now", "fired during bake"],
                [
                    (
                        {"kind": "alarm", "alarm": str(a.get("name"))},
                        [e(a.get("name")), _badge(a.get("state_now")), e(a.get("fired_during_bake"))],
                    )
                    for a in alarms
                ],
                "alarm",
            )
        )
    for hold in evidence.get("holds") or []:
        if isinstance(hold, dict):
            parts.append(
                f"<p data-kind='hold'>hold on {e(hold.get('scope'))} by {e(hold.get('by'))} "
                f"({e(hold.get('identity'))}): {e(hold.get('reason'))}</p>"
            )
    if evidence.get("freeze_reason"):
        parts.append(f"<p data-kind='freeze'>freeze: {e(evidence['freeze_reason'])}</p>")
    for missing in evidence.get("missing") or []:
        parts.append(f"<p data-kind='missing' class='bad'>missing: {e(missing)}</p>")
    return "".join(parts)


def _stage_section(doc: dict[str, Any], stage: dict[str, Any]) -> str:
    name = stage["name"]
    parts = [f'<section class="stage" data-kind="stage" data-stage="{e(name)}">']
    parts.append(f"<h2>stage {e(name)} {_badge(stage['state'])}</h2>")
    approval = stage.get("approval")
    if approval:
        approvers = ", ".join(approval.get("approvers") or []) or "-"
        parts.append(
            f'<div class="box" data-kind="approval" data-stage="{e(name)}" data-status="{e(approval["status"])}">'
            f"<h3>approval {_badge(approval['status'])}</h3><dl>"
            f"<dt>requested</dt><dd>{e(approval['requested_at'])}</dd>"
            f"<dt>answered by</dt><dd data-field='decided_by'>{e(approval['decided_by'])}</dd>"
            f"<dt>IAM identity</dt><dd data-field='identity'><code>{e(approval['identity'])}</code></dd>"
            f"<dt>reason</dt><dd data-field='reason'>{e(approval['reason'])}</dd>"
            f"<dt>may answer</dt><dd>{e(approvers)}</dd></dl></div>"
        )
    builds = [b for b in doc["builds"] if b["stage"] == name]
    rows: list[tuple[dict[str, str], list[str]]] = []
    for wave in stage["waves"]:
        phase = next(
            (p for p in doc["timeline"] if p["kind"] == "wave" and p["stage"] == name and p["wave"] == wave["wave"]),
            None,
        )
        rows.append(
            (
                {"kind": "wave", "stage": name, "wave": str(wave["wave"])},
                [
                    f"<b>wave {e(wave['wave'])}</b>",
                    f"{e(wave['services'])} services: {e(wave['succeeded'])} ok, {e(wave['failed'])} failed",
                    _badge(wave["state"]),
                    "",
                    e(phase["start"] if phase else "not started"),
                    e(_span(_between(phase["start"], phase["end"])) if phase else None),
                    "",
                    "",
                ],
            )
        )
        for b in (b for b in builds if b["wave"] == wave["wave"]):
            rows.append(
                (
                    {"kind": "build", "stage": name, "wave": str(b["wave"]), "build-id": str(b["build_id"] or "")},
                    [
                        "",
                        e(b["service"]),
                        _badge(b["status"]),
                        f"<code>{e(b['build_id'])}</code>",
                        e(b["started_at"]),
                        e(_span(b["duration_s"])),
                        f"<code>{e(str(b['commit'] or '')[:12])}</code>",
                        e(b["error"]),
                    ],
                )
            )
    parts.append("<h3>waves and builds</h3>")
    parts.append(
        _table(["wave", "service", "status", "build id", "started", "duration", "commit", "error"], rows, "build")
    )
    bake = next((p for p in doc["timeline"] if p["kind"] == "bake" and p["stage"] == name), None)
    if bake:
        parts.append(
            f'<div class="box" data-kind="bake" data-stage="{e(name)}" data-start="{e(bake["start"])}" '
            f'data-end="{e(bake["end"])}"><h3>tests and bake {_badge(bake["state"])}</h3>'
            f"<p>from {e(bake['start'])} to {e(bake['end'])} ({e(_span(_between(bake['start'], bake['end'])))})</p>"
            "</div>"
        )
    gate = next((g for g in doc["gates"] if g["stage"] == name), None)
    if gate:
        parts.append(
            f'<div class="box" data-kind="gate" data-stage="{e(name)}" data-verdict="{e(gate["verdict"])}">'
            f"<h3>gate {_badge(gate['verdict'])}</h3>{_evidence(gate)}</div>"
        )
    parts.append("</section>")
    return "".join(parts)


def _canaries(doc: dict[str, Any]) -> str:
    canaries = doc["canaries"]
    if canaries is None:
        return '<p class="dim" data-kind="canary-none">canaries not read (see the notes)</p>'
    rows = []
    for c in canaries:
        if c["hooks"] is None:
            hooks = "<span class='dim'>hook results not readable</span>"
        else:
            hooks = (
                "<ul class='hooks'>"
                + "".join(
                    f"<li data-kind='hook' data-event='{e(h['name'])}' data-status='{e(h['status'])}'>"
                    f"{e(h['name'])}: {_badge(h['status'])}{' — ' + e(h['message']) if h.get('message') else ''}</li>"
                    for h in c["hooks"]
                )
                + "</ul>"
            )
        rows.append(
            (
                {"kind": "canary", "deployment-id": str(c["deployment_id"]), "function": str(c["function"] or "")},
                [
                    f"<code>{e(c['deployment_id'])}</code>",
                    e(c["function"]) + f" <span class='dim'>{e(c['alias'])}</span>",
                    f"v{e(c['current_version'])} → v{e(c['target_version'])}",
                    e(str(c["config"] or "").removeprefix("CodeDeployDefault.")),
                    _badge(c["status"]),
                    f"{e(c['created_at'])} → {e(c['completed_at'])}",
                    hooks,
                    e(c["error"]) + (f"<br>rollback: {e(c['rollback'])}" if c.get("rollback") else ""),
                ],
            )
        )
    return _table(
        ["deployment", "function", "versions", "config", "status", "when", "hook results", "error"],
        rows,
        "canary",
        "no CodeDeploy deployment of this release's functions",
    )


def _rollbacks(doc: dict[str, Any]) -> str:
    rows = [
        (
            {"kind": "alias", "function": str(m["function"]), "rolled-back": "true" if m["rolled_back"] else "false"},
            [
                e(m["stage"]),
                e(m["wave"]),
                e(m["function"]),
                e(m["alias"]),
                e(m["before"]),
                e(m["after"]),
                "<b class='bad'>rolled back</b>" if m["rolled_back"] else "",
            ],
        )
        for m in doc["aliases"]
    ]
    table = _table(["stage", "wave", "function", "alias", "before", "after", ""], rows, "alias", "no alias moved")
    after = [ev for ev in doc["events"] if ev["kind"] in {"live_after_end", "rolled_back", "rollback"}]
    lines = "".join(
        f"<pre data-kind='rollback-event'>{e(ev['at'])} {e(ev['kind'])}\n"
        f"{e(json.dumps(ev['detail'], indent=2, default=str))}</pre>"
        for ev in after
    )
    return table + lines


def _break_glass(doc: dict[str, Any]) -> str:
    used = [ev for ev in doc["events"] if "break_glass" in ev["kind"] or "skip_bake" in ev["kind"]]
    rows = [
        (
            {"kind": "break-glass"},
            [
                e(ev["at"]),
                e(ev["kind"]),
                e(_who(ev["detail"])),
                e(", ".join(f"{k}={v}" for k, v in ev["detail"].items() if k not in {"by", "identity"})),
            ],
        )
        for ev in used
    ]
    return _table(["at", "what", "who", "detail"], rows, "break-glass", "no break glass recorded")


def _events(doc: dict[str, Any]) -> str:
    rows = [
        (
            {"kind": "event", "event": str(ev["kind"])},
            [
                e(ev["at"]),
                e(ev["kind"]),
                e(_who(ev["detail"])),
                e(", ".join(f"{k}={v}" for k, v in ev["detail"].items() if k not in {"by", "identity"})),
            ],
        )
        for ev in doc["events"]
    ]
    return _table(["at", "event", "who", "detail"], rows, "event")


def _manifest(doc: dict[str, Any]) -> str:
    rows = [
        (
            {"kind": "manifest", "service": str(m["service"])},
            [
                e(m["wave"]),
                e(m["service"]),
                f"<code>{e((m['previous_commit'] or '-')[:12])}</code>",
                f"<code>{e(str(m['commit'])[:12])}</code>",
                e(m["source"]),
            ],
        )
        for m in doc["manifest"]
    ]
    return _table(["wave", "service", "from", "to", "source"], rows, "manifest", "nothing rode this release")


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d2330;background:#fafbfc}
h1{font-size:22px;margin:0 0 8px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d8dde6}
h3{font-size:15px;margin:14px 0 6px}code{font:12px ui-monospace,Menlo,Consolas,monospace}
table{border-collapse:collapse;margin:6px 0 12px;background:#fff}th,td{border:1px solid #d8dde6;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#eef1f6}dl{display:grid;grid-template-columns:max-content auto;
gap:2px 14px;margin:4px 0}dt{font-weight:600}dd{margin:0}.box{background:#fff;border:1px solid #d8dde6;
border-radius:6px;padding:4px 12px;margin:8px 0}.badge{display:inline-block;padding:0 7px;border-radius:9px;
font-size:12px;font-weight:600;color:#fff;background:#6b7385}.badge.ok{background:#2e9e5b}.badge.bad{background:#c0392b}
.badge.run{background:#3b7dd8}.badge.dim{background:#9aa1ad}.bad{color:#c0392b}.dim{color:#6b7385}
.notes{background:#fff6e0;border:1px solid #e0a030;padding:6px 12px;border-radius:6px}
svg{background:#fff;border:1px solid #d8dde6;border-radius:6px}svg .lane{font-size:12px;fill:#1d2330}
svg .bar{font-size:11px;fill:#fff}svg .axis{font-size:11px;fill:#6b7385}svg .grid{stroke:#eef1f6}
svg .tick{stroke:#d8dde6;stroke-dasharray:3 3}pre{background:#fff;border:1px solid #d8dde6;padding:6px;overflow:auto}
"""

_PAGE = string.Template(
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>release $release_id</title>
<style>$css</style></head>
<body>
<header data-kind="release" data-release-id="$release_id" data-status="$status">
<h1>release $release_id $badge</h1>
<dl>
<dt>fleet</dt><dd>$fleet</dd>
<dt>reason</dt><dd>$reason</dd>
<dt>started</dt><dd>$created_at by $requested_by</dd>
<dt>ended</dt><dd>$ended_at ($duration)</dd>
<dt>execution</dt><dd><code>$execution_arn</code></dd>
<dt>report made</dt><dd>$generated_at</dd>
</dl></header>
$notes
<section data-kind="timeline-section"><h2>timeline</h2>$svg</section>
$stages
<section data-kind="canaries"><h2>canaries</h2>$canaries</section>
<section data-kind="rollbacks"><h2>aliases moved and rollbacks</h2>$rollbacks</section>
<section data-kind="break-glass-section"><h2>break glass</h2>$break_glass</section>
<section data-kind="manifest-section"><h2>manifest</h2>$manifest</section>
<section data-kind="events"><h2>events: who did what</h2>$events</section>
</body></html>
"""
)


def render_html(doc: dict[str, Any]) -> str:
    release = doc["release"]
    notes = (
        '<div class="notes" data-kind="notes">' + "".join(f"<p>{e(n)}</p>" for n in doc["notes"]) + "</div>"
        if doc["notes"]
        else ""
    )
    return _PAGE.substitute(
        css=_CSS,
        release_id=e(release["release_id"]),
        status=e(release["status"]),
        badge=_badge(release["status"]),
        fleet=e(release["fleet"]),
        reason=e(release["reason"]),
        created_at=e(release["created_at"]),
        requested_by=e(release["requested_by"]),
        ended_at=e(release["ended_at"] or "running"),
        duration=e(_span(release["duration_s"])),
        execution_arn=e(release["execution_arn"]),
        generated_at=e(doc["generated_at"]),
        notes=notes,
        svg=_svg(doc),
        stages="".join(_stage_section(doc, s) for s in doc["stages"]),
        canaries=_canaries(doc),
        rollbacks=_rollbacks(doc),
        break_glass=_break_glass(doc),
        manifest=_manifest(doc),
        events=_events(doc),
    )


# --- the command ---------------------------------------------------------------------------------------------------


def gather(session: Any, show: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The show document plus what CodeBuild and CodeDeploy say; either one unreadable is a note, not a failure: the
    ledger is the record, they only add times and hook results."""
    from botocore.exceptions import BotoCoreError, ClientError

    from trainctl.convention import describe_aws_error

    notes: list[str] = []
    times: dict[str, dict[str, Any]] = {}
    ids = [str(b["build_id"]) for b in show["builds"] if b["build_id"]]
    try:
        times = build_times(session.client("codebuild"), ids)
        unknown = len(set(ids) - set(times))
        if unknown:  # BatchGetBuilds' buildsNotFound, or an endpoint that keeps no builds
            notes.append(f"CodeBuild has no record of {unknown} of {len(set(ids))} builds: their times are unknown")
    except (BotoCoreError, ClientError) as exc:
        notes.append(f"build times not read: {describe_aws_error(exc)}")
    canaries: list[dict[str, Any]] | None = None
    release = show["release"]
    start, end = _at(release["created_at"]), _at(release["ended_at"]) or now
    functions = {str(m["function"]) for m in show["aliases"]}
    try:
        canaries = read_canaries(session.client("codedeploy"), functions, start or now, end, notes) if start else []
    except (BotoCoreError, ClientError) as exc:
        notes.append(f"canaries not read: {describe_aws_error(exc)}")
    return report_doc(show, times, canaries, notes, now)


def _destination(path: str) -> Path | None:
    """`-` is stdout; a file must be creatable: its folder exists and it is not a folder itself (checked first)."""
    if path == "-":
        return None
    target = Path(path)
    if target.is_dir():
        raise CommandError(
            f"--html {path}: is a folder; name a file, e.g. --html {path.rstrip('/')}/report.html", USAGE
        )
    if not target.parent.is_dir():
        raise CommandError(
            f"--html {path}: the folder {target.parent} does not exist; create it or pick another", USAGE
        )
    return target


@main.command()
@click.argument("release_id")
@click.option("--html", "html_path", required=True, metavar="FILE", help="the HTML file to write (- for stdout)")
@_target_options
@output_option
def report(
    release_id: str,
    html_path: str,
    where: Where,
    output: str,
) -> None:
    """One release as a self-contained HTML page (no network needed to view it): a timeline of stages, waves,
    builds, bake, approval, gate and canaries, with the evidence and who did what."""
    from trainctl import cli
    from trainctl.views import find_release, show_doc

    if html_path == "-" and output == "json":
        fail("--html - writes the page to stdout, where --output json would go too: pick one (or --html FILE)", USAGE)
    with guarded():
        destination = _destination(html_path)
        target = where.target()
        now = cli._now()
        record = find_release(target.ledger, release_id, target.table_name)
        doc = gather(target.session, show_doc(target.ledger, record, now), now)
        page = render_html(doc)
        if destination is None:
            click.echo(page, nl=False)
            for line in doc["notes"]:
                note(line)
            return
        try:
            destination.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise CommandError(
                f"--html {html_path}: cannot write it ({exc.strerror}): pick another file", USAGE
            ) from None
    for line in doc["notes"]:
        note(line)
    summary = {
        "release_id": release_id,
        "file": str(destination),
        "bytes": len(page.encode()),
        "builds": len(doc["builds"]),
        "canaries": None if doc["canaries"] is None else len(doc["canaries"]),
        "notes": doc["notes"],
    }

    def render(d: dict[str, Any]) -> None:
        out.print(
            text(f"wrote {d['file']} ({d['bytes']:,} bytes): release {d['release_id']}, {d['builds']} builds"),
            soft_wrap=True,
        )

    emit(output, summary, render)
