"""`trainctl plan`: what the train would release now, starting nothing.

It reads what PlanRelease reads (the fleet in the config bucket and the stack's guardrails, every branch head, the
ledger's baseline and what the last stage runs, holds, the train lock) and decides with the same code
(release_train/services/preview.py). It writes nothing and starts nothing: no lock, no release, no notification.
Exit codes: 0 a train would leave; 1 it would not (freeze, hold, a running release holds the lock, nothing to
release, a refused fleet); 2 bad input; 3 AWS, credentials, or a source that cannot be read (trainctl/convention.py).
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import click
from rich.table import Table

from release_train.domain.errors import InvalidInput
from release_train.domain.fleet import Fleet
from release_train.domain.release import ExecutionInput, blocking_holds, parse_execution_input
from trainctl import cli
from trainctl.cli import _aws_options, main
from trainctl.convention import (
    AWS,
    FAILED,
    OK,
    USAGE,
    CommandError,
    emit,
    fail,
    guarded,
    note,
    out,
    output_option,
    text,
)


@main.command()
@click.option("--services", default=None, help="comma-separated services to preview (they ride even if unchanged)")
@click.option("--all", "all_services", is_flag=True, help="preview a release of every service of the fleet")
@click.option(
    "--table", envvar="RELEASE_TRAIN_TABLE", default=None, help="the ledger table (default: the stack's output)"
)
@_aws_options
@output_option
def plan(
    services: str | None,
    all_services: bool,
    table: str | None,
    stack_name: str,
    profile: str | None,
    region: str | None,
    output: str,
) -> None:
    """What the train would release now: changed services with their commit ranges and waves, or why it would not
    leave (freeze, hold, a running release, nothing changed). Starts nothing, writes nothing."""
    if services is not None and all_services:
        fail("--services and --all exclude each other: name services, or preview all of them", USAGE)
    names = [n.strip() for n in (services or "").split(",") if n.strip()]
    if services is not None and not names:
        fail("--services names no service: e.g. --services orders,payments", USAGE)
    # The input `trainctl start` would send (what PlanRelease parses), checked the same way.
    with guarded():
        request = parse_execution_input(
            {"trigger": "manual", "services": names or ("all" if all_services else "changed"), "requested_by": "plan"}
        )
        doc = _preview(request, table, stack_name, profile, region)
    emit(output, doc, _render)
    if output == "json" and not doc["would_leave"]:  # the table says so itself
        note(f"the train would not leave: {'; '.join(b['reason'] for b in doc['blocked_by'])}")
    sys.exit(OK if doc["would_leave"] else FAILED)


def _preview(
    request: ExecutionInput, table: str | None, stack_name: str, profile: str | None, region: str | None
) -> dict[str, Any]:
    from botocore.config import Config

    from release_train.adapters.fleet_store import FLEET_KEY, FleetStore
    from release_train.adapters.sources import SourceError, Sources
    from release_train.domain.guardrails import Guardrails
    from release_train.services import preview
    from trainctl.target import Target, TargetError

    target = Target(cli._session(profile, region), stack_name, table)
    session, stack = target.session, target.stack
    bucket = stack.output("ConfigBucketName")
    s3 = session.client("s3")
    try:
        fleet, version = FleetStore(s3, bucket).load()
        # PlanRelease applies the stack's guardrails to the fleet it loads (the same parameters, from the stack).
        Guardrails.from_parameters(stack.parameters, stack.account).check(fleet, "the fleet in the config bucket")
    except s3.exceptions.NoSuchKey:
        where = f"s3://{bucket}/{FLEET_KEY}"
        raise TargetError(f"no fleet at {where} (stack {stack_name}): push one (trainctl fleet push)") from None
    except InvalidInput as exc:
        # The operator's command is fine; the train would be refused (PlanRelease raises the same error).
        raise CommandError(
            f"the train would not leave: {exc.source} is invalid: {'; '.join(exc.problems)}", FAILED
        ) from None
    unknown = preview.unknown_services(fleet, request)
    if unknown:
        raise CommandError(f"--services: not in fleet {fleet.fleet}: {', '.join(unknown)}", USAGE)

    now = cli._now()
    ledger = target.ledger
    sources = Sources(
        # GetBranch with botocore's adaptive retries, as the Lambda's clients (adapters/aws.py).
        session.client("codecommit", config=Config(retries={"max_attempts": 8, "mode": "adaptive"})),
        session.client("secretsmanager"),
        stack.parameters.get("GitHubApiUrl") or "https://api.github.com",  # template.yaml's default
    )
    try:
        riding = preview.what_rides(fleet, request, sources, ledger)
    except SourceError as exc:
        # The adapter's reason names the source and what went wrong, never a token or a URL.
        service = preview.service_on(fleet, exc.source)
        reason = exc.reason.removeprefix(f"service {service}: ")
        retry = "; it may pass later (transient)" if exc.transient else ""
        raise CommandError(f"service {service}: cannot read the head of {exc.source}: {reason}{retry}", AWS) from None

    by_name = {s.name: s for s in fleet.services}
    rows: list[dict[str, Any]] = [
        {
            "service": c.service,
            "wave": by_name[c.service].wave,
            "source": _source(by_name[c.service]),
            "previous_commit": c.previous_commit,
            "commit": c.commit,
            "range": _range(c.previous_commit, c.commit),
            "changed": c.commit != c.previous_commit,
        }
        for c in riding.changes
    ]
    riding_names = [r["service"] for r in rows]
    changed = [s.name for s in fleet.services if riding.heads[s.name] != riding.compared.get(s.name)]
    blocked: list[dict[str, Any]] = []
    notes: list[str] = []
    frozen = preview.freeze_reason(fleet, now)
    if frozen is not None:
        window = fleet.freeze_at(now)
        assert window is not None
        blocked.append(
            {
                "kind": "freeze",
                "reason": frozen,
                "window": window.reason,
                "until": _iso(window.end),
                "reopens": _iso(fleet.next_open_time(now)),
            }
        )
    if not rows:
        blocked.append({"kind": "nothing_to_release", "reason": preview.nothing_reason(fleet, riding.baseline_id)})
    else:
        for hold in blocking_holds(ledger.holds(fleet.fleet), riding_names):
            where = "the fleet" if hold.scope == "*" else hold.scope
            blocked.append(
                {
                    "kind": "hold",
                    "reason": f"hold on {where} by {hold.by}: {hold.reason}",
                    "scope": hold.scope,
                    "by": hold.by,
                    "identity": hold.identity,
                }
            )
    lock = _lock(target, fleet.fleet)
    if lock is not None and lock["blocks"]:
        blocked.append({"kind": "lock", **{k: v for k, v in lock.items() if k != "blocks"}})
    elif lock is not None:
        notes.append(lock["reason"])

    waves = sorted({r["wave"] for r in rows})
    return {
        "fleet": fleet.fleet,
        "fleet_version": version,
        "stack": stack_name,
        "evaluated_at": _iso(now),
        "request": request.services if isinstance(request.services, str) else list(request.services),
        "would_leave": not blocked,
        "blocked_by": blocked,
        "notes": notes,
        "compared_with": {"stage": fleet.stages[-1].name, "last_release": riding.baseline_id},
        "services": rows,
        "waves": [{"wave": w, "services": [r["service"] for r in rows if r["wave"] == w]} for w in waves],
        "unchanged": len(fleet.services) - len(changed),
        "changed_not_selected": [n for n in changed if n not in riding_names],
        "estimate": _estimate(fleet, rows) if rows else None,
    }


def _lock(target: Any, fleet: str) -> dict[str, Any] | None:
    """Who holds the train lock and what PlanRelease would do about it (services/plan_release.py `_take_lock`):
    reclaim it from an execution that ended, supersede a release that waits only for an approval, else refuse."""
    from release_train.adapters.executions import Executions

    ledger = target.ledger
    holder = ledger.lock(fleet)
    if holder is None:
        return None
    found = {"release_id": holder.release_id, "execution_arn": holder.execution_arn, "since": holder.acquired_at}
    if not Executions(cli._states_client(target.session, holder.execution_arn)).is_running(holder.execution_arn):
        why = f"release {holder.release_id} holds the lock but its execution ended: the next train reclaims the lock"
        return {**found, "blocks": False, "reason": why}
    pending = [a.stage for a in ledger.pending_approvals(holder.release_id)]
    if pending:
        why = (
            f"release {holder.release_id} waits for the {', '.join(pending)} approval: the scheduled train supersedes "
            "it (it ends BLOCKED); `trainctl start` does so only with --supersede"
        )
        return {**found, "blocks": False, "reason": why, "waiting_for_approval": pending}
    why = f"release {holder.release_id} is running and holds the {fleet} train lock since {holder.acquired_at}"
    return {**found, "blocks": True, "reason": why}


def _estimate(fleet: Fleet, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """History events of this release (domain/scale.py's formula, as `fleet validate` and the bench use it)."""
    from release_train.domain.scale import CHUNK_SIZE, HISTORY_CAP, estimate

    per_wave: dict[int, int] = {}
    for row in rows:
        per_wave[row["wave"]] = per_wave.get(row["wave"], 0) + 1
    found = estimate([dict(per_wave) for _ in fleet.stages], [])
    return {
        "history_events": found.release_events,
        "largest_chunk_events": found.chunk_events,
        "history_cap": HISTORY_CAP,
        "chunks_per_stage": sum(-(-n // CHUNK_SIZE) for n in per_wave.values()),
        "stages": len(fleet.stages),
    }


def _source(service: Any) -> str:
    from release_train.adapters.sources import describe

    return describe(service.source)


def _range(previous: str | None, commit: str) -> str | None:
    """A git range (`git log previous..commit`), or None when there is nothing to compare with."""
    from release_train.domain.live import UNKNOWN

    return None if previous in (None, UNKNOWN) or previous == commit else f"{previous}..{commit}"


def _iso(moment: datetime) -> str:
    from release_train.services.context import iso

    return iso(moment)


def _short(commit: str | None) -> str:
    if commit is None:
        return "first release"
    return commit if commit == "unknown" else commit[:12]


def _render(doc: dict[str, Any]) -> None:
    head = f"fleet {doc['fleet']} (version {doc['fleet_version'] or '-'}) at {doc['evaluated_at']}"
    out.print(text(head, "bold"), soft_wrap=True)
    if doc["would_leave"]:
        waves = [w["wave"] for w in doc["waves"]]
        out.print(text(f"would release {len(doc['services'])} services in waves {waves}", "green"), soft_wrap=True)
    for block in doc["blocked_by"]:
        out.print(text(f"would not leave: {block['reason']}", "red"), soft_wrap=True)
    for line in doc["notes"]:
        out.print(text(f"note: {line}", "yellow"), soft_wrap=True)
    if doc["services"]:
        title = "would ride" if doc["would_leave"] else "would ride once unblocked"
        table = Table("wave", "service", "source", "from", "to", "changed", title=title, title_justify="left")
        for row in doc["services"]:
            table.add_row(
                text(row["wave"]),
                text(row["service"]),
                text(row["source"]),
                text(_short(row["previous_commit"])),
                text(_short(row["commit"])),
                text("yes" if row["changed"] else "no (requested)", "" if row["changed"] else "dim"),
            )
        out.print(table)
    compared = doc["compared_with"]
    out.print(
        text(
            f"{doc['unchanged']} unchanged (compared with what {compared['stage']} runs; last release "
            f"{compared['last_release'] or 'none yet'})"
        ),
        soft_wrap=True,
    )
    if doc["changed_not_selected"]:
        out.print(text(f"changed but not selected: {', '.join(doc['changed_not_selected'])}"), soft_wrap=True)
    estimate = doc["estimate"]
    if estimate:
        out.print(
            text(
                f"estimate: about {estimate['history_events']:,} history events in the release's execution "
                f"(cap {estimate['history_cap']:,}), {estimate['chunks_per_stage']} build chunks per stage"
            ),
            soft_wrap=True,
        )
