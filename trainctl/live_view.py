"""What `trainctl simulate` shows while a train runs, and the summary it prints when the train ends.

`LiveTrain` folds the execution's history events (the ones GetExecutionHistory returns: state entered/exited, task
succeeded/failed) into one JSON-ready document: stage -> wave -> builds running/succeeded/failed with the names of
the failures, tests, the bake (virtual time left), the approval (pending, or answered by whom), the gate, canary
traffic. The renderers are pure functions of documents: `render_live` (the refreshing view on a terminal),
`milestone` lines (the same news as one line each when the output is a log), `render_summary` (the end: tables in
wave order, a wave of more than LARGE_WAVE services as counts with its failures first, the release's reason last).
No ASL state name reaches the operator: each is translated into what it means for the release.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from trainctl.convention import text

LARGE_WAVE = 20  # more services than this in one wave of one stage: counts and failures, not a row per service
NAMES_SHOWN = 8  # failure names printed in one live line before "+N more"

# The release's end states (ASL) -> what the operator reads.
_ENDINGS = {
    "Released": "released",
    "ReleaseBlocked": "blocked",
    "ReleaseFailed": "failed",
    "NothingToRelease": "nothing to release",
    "StartRefused": "start refused: another train runs",
    "InputRejected": "input rejected",
    "PlanFailed": "planning failed",
}


def _stage_name(value: Any) -> str | None:
    """A state's `stage` is the stage document in the release's states and its name in a wave's or chunk's."""
    if isinstance(value, dict):
        value = value.get("name")
    return str(value) if value else None


def _json(value: Any) -> Any:
    try:
        return json.loads(value) if isinstance(value, str) else None
    except ValueError:
        return None


def duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    return f"{days}d {hours}h" if days else f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


def _names(names: list[str], limit: int = NAMES_SHOWN) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" +{len(names) - limit} more" if len(names) > limit else "")


class LiveTrain:
    """The live document of one simulated release, built from its execution history events as they are written.

    Called with each observed event (trainctl.sandbox.runner.Observed: type, state, input, virtual_time, details);
    returns the milestone lines that event produced (for a log). `canaries` reads the emulated CodeDeploy's
    deployments (the traffic shift has no Step Functions event of its own)."""

    def __init__(self, canaries: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        self._canaries = canaries or list
        self.release_id: str | None = None
        self.services: int | None = None
        self.started_at: datetime | None = None
        self.now: datetime | None = None
        self.phase = "starting"
        self.stage: str | None = None
        self.stages: dict[str, dict[str, Any]] = {}
        self._approving: str | None = None  # the stage whose approval is being asked (stages run one at a time)
        self._gating: str | None = None
        self._lock = threading.Lock()  # Map iterations write history from several threads; a screen reads

    # --- folding events -------------------------------------------------------------------------------------------

    def _stage(self, name: str) -> dict[str, Any]:
        return self.stages.setdefault(
            name,
            {
                "name": name,
                "state": "waiting",
                "waves": {},
                "tests": None,
                "bake": None,
                "approval": None,
                "gate": None,
            },
        )

    def _wave(self, stage: str, wave: Any) -> dict[str, Any]:
        waves: dict[str, dict[str, Any]] = self._stage(stage)["waves"]
        return waves.setdefault(
            str(wave), {"wave": wave, "state": "building", "running": [], "succeeded": [], "failed": {}}
        )

    def __call__(self, observed: Any) -> list[str]:
        with self._lock:
            return self._fold(observed)

    def __rich__(self) -> RenderableType:
        return render_live(self.doc())

    def _fold(self, observed: Any) -> list[str]:
        self.now = observed.virtual_time
        self.started_at = self.started_at or observed.virtual_time
        details: dict[str, Any] = getattr(observed, "details", None) or {}
        state, data = observed.state, observed.input or {}
        if state:
            return self._entered(state, data)
        if observed.type == "TaskStateExited" or "stateExitedEventDetails" in details:
            exited = details.get("stateExitedEventDetails") or {}
            if exited.get("name") == "PlanRelease":
                plan = (_json(exited.get("output")) or {}).get("plan") or {}
                self.release_id = plan.get("release_id") or self.release_id
                self.services = plan.get("service_count")
                for item in plan.get("stages") or []:
                    if _stage_name(item):
                        self._stage(str(_stage_name(item)))
            return []
        answered = details.get("taskSucceededEventDetails") or details.get("taskFailedEventDetails")
        timed_out = details.get("taskTimedOutEventDetails")
        callback = answered or timed_out or {}
        if callback.get("resource") == "invoke.waitForTaskToken" and self._approving:
            return self._answered(observed.type, callback)
        if observed.type == "ExecutionAborted" and self.phase not in _ENDINGS.values():
            self.phase = "cancelled"
            return ["train ended: cancelled (StopExecution)"]
        return []

    def _entered(self, state: str, data: dict[str, Any]) -> list[str]:
        stage = _stage_name(data.get("stage"))
        lines: list[str] = []
        if state in _ENDINGS:
            self.phase = _ENDINGS[state]
            if state in {"Released", "ReleaseBlocked"}:  # a gate that was deciding decided this
                lines += self._gate("PROMOTE" if state == "Released" else "BLOCK")
            return [*lines, f"train ended: {self.phase}"]
        if state == "PlanRelease":
            self.phase = "planning"
            return []
        if stage is None:
            return []
        if self._gating and self._gating != stage:  # the next stage was entered: the gate promoted
            lines += self._gate("PROMOTE")
        self.stage = stage
        self.phase = "running"
        doc = self._stage(stage)
        if state == "RequestApproval":
            doc["state"] = "waiting for approval"
            doc["approval"] = {"status": "PENDING", "since": _iso(self.now), "by": None, "note": None}
            self._approving = stage
            lines.append(f"{stage}: approval requested; nothing is deployed to {stage} until it is given")
        elif state == "LoadWave":
            wave = self._wave(stage, data.get("wave"))
            doc["state"] = f"wave {wave['wave']}"
            lines.append(f"{stage} wave {wave['wave']}: started")
        elif state in {"Build", "BuildDone", "BuildFailed"}:
            lines += self._build(state, stage, data)
        elif state == "RecordWave":
            wave = self._wave(stage, data.get("wave"))
            wave["state"] = "done"
            failed = sorted(wave["failed"])
            lines.append(
                f"{stage} wave {wave['wave']}: {len(wave['succeeded'])} succeeded, {len(failed)} failed"
                + (f" ({_names(failed)})" if failed else "")
            )
        elif state == "RunTests":
            doc["state"] = "testing"
            doc["tests"] = "running"
            lines.append(f"{stage}: tests running")
        elif state == "Bake":
            tests = data.get("tests") or {}
            doc["tests"] = tests.get("status") or doc["tests"]
            seconds = (
                int((data.get("stage") or {}).get("bake_seconds") or 0) if isinstance(data.get("stage"), dict) else 0
            )
            ends = (self.now or datetime.min) + timedelta(seconds=seconds)
            doc["state"] = "baking"
            doc["bake"] = {"seconds": seconds, "ends_at": _iso(ends)}
            lines.append(f"{stage}: baking {duration(seconds)}, until {_clock(ends)}")
        elif state == "EvaluateGate":
            doc["state"] = "gate"
            self._gating = stage
            lines.append(f"{stage}: gate evaluating the evidence")
        return lines

    def _gate(self, verdict: str) -> list[str]:
        if self._gating is None:
            return []
        stage, self._gating = self._gating, None
        self._stage(stage)["gate"] = verdict
        return [f"{stage}: gate {verdict}"]

    def _build(self, state: str, stage: str, data: dict[str, Any]) -> list[str]:
        wave = self._wave(stage, data.get("wave"))
        service = str(data.get("service") or "?")
        if state == "Build":
            wave["running"].append(service)
            return []
        if service in wave["running"]:
            wave["running"].remove(service)
        if state == "BuildDone":
            wave["succeeded"].append(service)
            return []
        error = data.get("error") or {}
        cause = _json(error.get("Cause")) or {}
        why = str(cause.get("BuildStatus") or error.get("Error") or "failed")  # the cause is the build description
        wave["failed"][service] = why
        return [f"{stage} wave {wave['wave']}: {service} {why}"]

    def _answered(self, event_type: str, callback: dict[str, Any]) -> list[str]:
        stage = str(self._approving)
        self._approving = None
        approval = self._stage(stage)["approval"] or {}
        if event_type == "TaskSucceeded":
            answer = _json(callback.get("output")) or {}
            approval.update(status="APPROVED", by=answer.get("approved_by"), note=answer.get("reason"))
            line = f"{stage}: approved by {approval['by'] or '-'}" + (
                f": {approval['note']}" if approval["note"] else ""
            )
        elif event_type == "TaskTimedOut":
            approval.update(status="TIMED OUT")
            line = f"{stage}: approval timed out: nothing was deployed to {stage}"
        else:
            approval.update(status="REJECTED", note=callback.get("cause"))
            line = f"{stage}: approval refused ({callback.get('error')}): {callback.get('cause') or '-'}"
        self._stage(stage)["approval"] = approval
        return [line]

    # --- the document -----------------------------------------------------------------------------------------------

    def doc(self) -> dict[str, Any]:
        with self._lock:
            return self._doc()

    def _doc(self) -> dict[str, Any]:
        stages = []
        for stage in self.stages.values():
            waves = [
                {
                    "wave": w["wave"],
                    "state": w["state"],
                    "running": len(w["running"]),
                    "succeeded": len(w["succeeded"]),
                    "failed": len(w["failed"]),
                    "failed_services": sorted(w["failed"]),
                }
                for w in stage["waves"].values()
            ]
            bake = stage["bake"]
            if bake and self.now is not None and stage["state"] == "baking":
                bake = {**bake, "left_s": max(0, int((_at(bake["ends_at"]) - self.now).total_seconds()))}
            stages.append({**stage, "waves": waves, "bake": bake})
        return {
            "release_id": self.release_id,
            "services": self.services,
            "virtual_time": _iso(self.now),
            "elapsed_s": (self.now - self.started_at).total_seconds() if self.now and self.started_at else 0,
            "phase": self.phase,
            "stage": self.stage,
            "stages": stages,
            "canaries": self._canaries(),
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _clock(moment: datetime) -> str:
    return moment.strftime("%a %d %b %H:%M")


def canaries_of(deployments: list[Any]) -> list[dict[str, Any]]:
    """The emulated CodeDeploy's deployments -> function, status and the share of traffic on the new version, read
    from the alias's routing as GetAlias returns it (RoutingConfig.AdditionalVersionWeights: the new version's
    weight while shifting; FunctionVersion alone once the shift is done)."""
    found = []
    for d in list(deployments):
        routing = d.routing[-1] if d.routing else None
        if routing is None:
            percent = 0.0
        elif routing["version"] == d.target_version and not routing["additional_weights"]:
            percent = 100.0
        else:
            percent = 100.0 * float(routing["additional_weights"].get(d.target_version, 0.0))
        found.append(
            {
                "function": d.site.function,
                "stage": d.site.stage,
                "status": d.status,
                "traffic_percent": round(percent, 1),
                "rolled_back": d.rolled_back,
            }
        )
    return found


# --- rendering -------------------------------------------------------------------------------------------------------


def wave_line(wave: dict[str, Any]) -> Text:
    """`wave 2  building · 1 running · 4 succeeded · 1 failed: catalog` (failures named, in red)."""
    line = Text(f"wave {wave['wave']}  {wave['state']}")
    parts = []
    if wave["running"]:
        parts.append(Text(f"{wave['running']} running", "cyan"))
    parts.append(Text(f"{wave['succeeded']} succeeded", "green" if wave["succeeded"] else ""))
    if wave["failed"]:
        parts.append(Text(f"{wave['failed']} failed: {_names(wave['failed_services'])}", "red"))
    for part in parts:
        line.append(" · ")
        line.append_text(part)
    return line


def stage_lines(stage: dict[str, Any]) -> list[Text]:
    lines: list[Text] = []
    approval = stage["approval"]
    if approval:
        if approval["status"] == "PENDING":
            lines.append(Text(f"approval pending since {approval['since']}", "yellow"))
        else:
            who = f" by {approval['by']}" if approval.get("by") else ""
            lines.append(
                Text(
                    f"approval {approval['status'].lower()}{who}"
                    + (f": {approval['note']}" if approval.get("note") else "")
                )
            )
    lines += [wave_line(w) for w in stage["waves"]]
    if stage["tests"]:
        lines.append(Text(f"tests {str(stage['tests']).lower()}"))
    bake = stage["bake"]
    if bake:
        left = f", {duration(bake['left_s'])} left" if "left_s" in bake else ""
        lines.append(Text(f"bake {duration(bake['seconds'])} until {_clock(_at(bake['ends_at']))}{left}"))
    if stage["gate"]:
        lines.append(Text(f"gate {stage['gate']}", "green" if stage["gate"] == "PROMOTE" else "red"))
    return lines


def render_live(doc: dict[str, Any]) -> RenderableType:
    """One screen: where the release is, then per stage its approval, waves, tests, bake, gate; canaries."""
    grid = Table.grid(padding=(0, 2))
    moment = _at(doc["virtual_time"]) if doc["virtual_time"] else None
    header = f"{_clock(moment)} (+{duration(doc['elapsed_s'])} virtual)" if moment else "-"
    now = next((s for s in doc["stages"] if s["name"] == doc["stage"]), None)
    where = f" · {now['name']}: {now['state']}" if now and doc["phase"] == "running" else ""
    grid.add_row(text("release", "bold"), text(f"{doc['release_id'] or '-'} · {doc['phase']}{where}"))
    grid.add_row(text("virtual time", "bold"), text(header))
    for stage in doc["stages"]:
        lines = stage_lines(stage) or [Text("not started", "dim")]
        grid.add_row(text(stage["name"], "bold"), lines[0])
        for line in lines[1:]:
            grid.add_row(Text(""), line)
    shifting = [c for c in doc["canaries"] if c["status"] not in {"Succeeded"}]
    for canary in shifting[:NAMES_SHOWN]:
        grid.add_row(
            text("canary", "bold"),
            text(f"{canary['function']} {canary['traffic_percent']:g}% on the new version ({canary['status']})"),
        )
    done = len(doc["canaries"]) - len(shifting)
    if done:
        grid.add_row(text("canary", "bold"), text(f"{done} shifted to 100%"))
    return grid


def milestone(moment: datetime, line: str) -> str:
    """A log line: the virtual time, then what happened."""
    return f"{_clock(moment)}  {line}"


# --- the summary at the end -------------------------------------------------------------------------------------------

_BUILD_STYLE = {"SUCCEEDED": "green", "NOT_BUILT": "dim"}


def _wave_rows(services: list[dict[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    """Rows (wave, service, commit, build, style) of one wave: each service, or -- more than LARGE_WAVE -- each
    failure first, then one row per other outcome with its count."""
    ordered = sorted(services, key=lambda s: (s["build_status"] in _BUILD_STYLE, s["name"]))  # failures first
    if len(services) <= LARGE_WAVE:
        return [
            (str(s["wave"]), s["name"], s["commit"][:12], s["build_status"], _BUILD_STYLE.get(s["build_status"], "red"))
            for s in ordered
        ]
    rows = [
        (str(s["wave"]), s["name"], s["commit"][:12], s["build_status"], "red")
        for s in ordered
        if s["build_status"] not in _BUILD_STYLE
    ]
    for status, style in _BUILD_STYLE.items():
        count = sum(1 for s in services if s["build_status"] == status)
        if count:
            rows.append((str(services[0]["wave"]), f"{count} services", "-", status, style))
    return rows


def summary_tables(doc: dict[str, Any]) -> list[RenderableType]:
    """Per stage, its services by wave (wave order); a large wave as its failures and counts."""
    tables: list[RenderableType] = []
    for stage in doc["stages"]:
        table = Table(title=text(f"stage {stage['name']}"), title_justify="left")
        for column in ("wave", "service", "commit", "build"):
            table.add_column(column)
        waves: dict[Any, list[dict[str, Any]]] = {}
        for service in stage["services"]:
            waves.setdefault(service["wave"], []).append(service)
        for wave in sorted(waves):
            for row in _wave_rows(waves[wave]):
                table.add_row(text(row[0]), text(row[1]), text(row[2]), text(row[3], row[4]))
        tables.append(table)
    return tables


def summary_lines(doc: dict[str, Any]) -> list[Text]:
    """Gates (stage order), canaries (problems first; a large fleet's successes counted), the second start, the
    costs -- and last, the release's status and reason."""
    lines: list[Text] = []
    order = [stage["name"] for stage in doc["stages"]]
    for gate in sorted(doc["gates"], key=lambda g: order.index(g["stage"]) if g["stage"] in order else len(order)):
        reasons = "; ".join(gate["reasons"]) or "all evidence good"
        lines.append(text(f"gate {gate['stage']}: {gate['verdict']} — {reasons}"))
    deployments = sorted(doc["deployments"], key=lambda d: d["status"] == "Succeeded" and not d.get("rolled_back"))
    good = [d for d in deployments if d["status"] == "Succeeded" and not d.get("rolled_back")]
    shown = deployments if len(deployments) <= LARGE_WAVE else [d for d in deployments if d not in good]
    for d in shown:
        hooks = ", ".join(f"{h['phase']} {h['status']}" for h in d.get("hooks", []))
        rolled_back = " (rolled back)" if d.get("rolled_back") else ""
        versions = f"v{d.get('current_version')} -> v{d.get('target_version')}"
        config = str(d.get("deployment_config", "")).removeprefix("CodeDeployDefault.")
        lines.append(
            text(
                f"canary {d['function']} {versions} ({config}): {d['status']}{rolled_back}"
                + (f" — {hooks}" if hooks else "")
            )
        )
    if len(shown) < len(deployments):
        lines.append(text(f"canary: {len(good)} more deployments Succeeded"))
    if doc.get("second_start"):
        lines.append(text(f"second start: {doc['second_start']['status']} ({doc['second_start']['error']})"))
    hours = doc["virtual_duration_s"] / 3600
    lines.append(
        text(
            f"virtual {hours:.1f} h in {doc['wall_s']:.2f} s wall · {doc['history_events']} history events "
            f"({doc['history_events'] / 250:.1f}% of 25,000) · {doc['state_transitions']} transitions "
            f"(${doc['estimated_cost_usd']:.4f}) · {doc['builds_started']} builds, {doc['builds_throttled']} throttled"
        )
    )
    status = Text(f"release {doc['release_id'] or '-'} ({doc['scenario']}): ", "bold")
    status.append(doc["status"], "green" if doc["status"] == "SUCCEEDED" else "red")
    status.append(f" — {doc['reason']}")
    lines.append(status)
    return lines


def render_summary(doc: dict[str, Any]) -> Group:
    """The end of a simulation (a SimulationResult's JSON document plus `scenario`): the reason is the last line."""
    return Group(*summary_tables(doc), *summary_lines(doc))
