"""`trainctl rollback RELEASE`: point every alias a release moved in a stage back to the version it replaced.

How it decides (docs/rollback.md): the release's alias journal (ADR 0006) in `LiveTracker.rollback_order` (newest
wave first) is checked whole with GetAlias before anything changes. An alias must be on the version this release put
there (then it goes back) or already on the one before (done: a re-run completes a partial rollback); anything else
means a later release or a person moved it, and the whole rollback is refused, naming it. Each UpdateAlias carries the
RevisionId its check read, so a move between check and update fails instead of being overwritten. Waves go back one
after the other, a wave's aliases concurrently; a wave with a failure stops the older waves (they may be depended on).
What went back is recorded through `LiveTracker.record_rollback`, the path RecordFailure's rollback uses.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import groupby
from typing import TYPE_CHECKING, Any

import click
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from rich.table import Table

from release_train.adapters.aws import error_code
from release_train.adapters.functions import AliasNow, Functions
from release_train.domain.live import AliasMove
from trainctl import cli
from trainctl.cli import Where, _target_options, main
from trainctl.convention import (
    FAILED,
    USAGE,
    CommandError,
    emit,
    fail,
    guarded,
    note,
    one_line,
    out,
    output_option,
    text,
)

# States of one alias in the plan and after the run.
BACK, ALREADY, NEW, WOULD, FAILED_, HELD = (
    "rolled back",
    "already back",
    "skipped: new function",
    "would roll back",
    "failed",
    "not attempted",
)
TO_DO, REFUSED = "to roll back", "refused"

if TYPE_CHECKING:
    from release_train.domain.fleet import Fleet

MAX_CONCURRENCY = 50


@dataclass(frozen=True)
class Step:
    move: AliasMove
    state: str
    now: AliasNow | None = None
    error: str | None = None

    def doc(self) -> dict[str, Any]:
        m = self.move
        return {
            "wave": m.wave,
            "service": m.service,
            "function": m.function,
            "alias": m.alias,
            "from": self.now.label() if self.now else m.after,
            "to": m.before,
            "routing": self.now.weights if self.now and self.now.weights else None,
            "state": self.state,
            "error": self.error,
        }


@dataclass(frozen=True)
class Plan:
    steps: list[Step]  # newest wave first
    refusals: list[str]  # why the whole rollback must not run, one per alias


def plan(journal: list[AliasMove], functions: Functions, concurrency: int) -> Plan:
    """Classify every alias the release moved (or already rolled back) from one GetAlias each, read concurrently."""
    relevant = [m for m in journal if m.moved or m.rolled_back or m.after is None]
    checked = [m for m in relevant if m.before is not None]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        now = dict(zip(checked, pool.map(lambda m: functions.alias_now(m.function, m.alias), checked), strict=True))
    steps, refusals = [], []
    for move in relevant:
        if move.before is None:
            if move.moved:  # the alias did not exist before this release: there is no version to go back to
                steps.append(Step(move, NEW))
            continue
        at = now[move]
        ours = {move.before} | ({move.after} if move.after is not None else set())
        if at is not None and at.version == move.before and not at.weights:
            if move.moved or move.rolled_back:
                steps.append(Step(move, ALREADY, at))
            continue  # never recorded, and still on `before`: this release did not move it
        if at is not None and move.after is not None and at.version in ours and set(at.weights) <= ours:
            steps.append(Step(move, TO_DO, at))
            continue
        if at is None:
            why = f"{move.function} (alias {move.alias}) no longer exists"
        elif move.after is None:
            why = (
                f"{move.function} points to {at.label()}, and wave {move.wave} was never recorded: whether this "
                f"release put it there is unknown; point it back by hand (it was on {move.before})"
            )
        else:
            why = (
                f"{move.function} (alias {move.alias}) points to {at.label()}, not to {move.after} as this release "
                "left it: a later release or a person moved it"
            )
        refusals.append(why)
        steps.append(Step(move, REFUSED, at, why))
    return Plan(steps, refusals)


def apply(steps: list[Step], functions: Functions, concurrency: int) -> list[Step]:
    """Point each TO_DO alias back, wave by wave (newest first), concurrently within a wave. After a wave with a
    failure, older waves are not attempted: a later wave's new code must not run against an earlier wave's old code."""

    def one(step: Step) -> Step:
        m, at = step.move, step.now
        try:
            functions.point_if(m.function, m.alias, str(m.before), at.revision_id if at else None)
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) == "PreconditionFailedException":
                return replace(step, state=FAILED_, error="moved since the check (UpdateAlias: RevisionId changed)")
            return replace(step, state=FAILED_, error=_error(exc))
        return replace(step, state=BACK)

    done: list[Step] = []
    stop = False
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for _, wave in groupby(steps, key=lambda s: s.move.wave):
            batch = list(wave)
            if stop:
                done.extend(replace(s, state=HELD) if s.state == TO_DO else s for s in batch)
                continue
            todo = [s for s in batch if s.state == TO_DO]
            results = iter(list(pool.map(one, todo)))  # the whole wave ends before the next one starts
            finished = [next(results) if s.state == TO_DO else s for s in batch]
            done.extend(finished)
            stop = any(s.state == FAILED_ for s in finished)
    return done


def _error(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return one_line(f"{error.get('Code', '')}: {error.get('Message', '')}")
    return one_line(f"{type(exc).__name__}: {exc}")


def lambda_client(session: Any, concurrency: int) -> Any:
    # One client shared by the worker threads (clients are thread-safe, sessions are not); a connection per worker.
    # GetAlias and UpdateAlias share Lambda's control-plane quota, 15 requests per second per Region ("Lambda quotas",
    # API requests): throttled calls are retried with the adapters' policy (adaptive backoff, 8 attempts).
    config = Config(retries={"max_attempts": 8, "mode": "adaptive"}, max_pool_connections=max(10, concurrency))
    return session.client("lambda", config=config)


@main.command()
@click.argument("release_id")
@click.option("--stage", default=None, help="the stage to roll back (default: the release's last stage)")
@click.option("--dry-run", is_flag=True, help="print what would change (alias, from -> to, wave); change nothing")
@click.option("--reason", required=True, help="why (recorded on the release with your IAM identity)")
@click.option(
    "--concurrency",
    type=click.IntRange(1, MAX_CONCURRENCY),
    default=10,
    show_default=True,
    help="aliases pointed back at once within a wave",
)
@click.option(
    "--stage-profile",
    default=None,
    help="AWS profile with credentials in the stage's account, for a stage that names `account` (docs/accounts.md)",
)
@_target_options
@output_option
def rollback(
    release_id: str,
    stage: str | None,
    dry_run: bool,
    reason: str,
    concurrency: int,
    stage_profile: str | None,
    where: Where,
    output: str,
) -> None:
    """Point every alias RELEASE_ID moved in a stage back to the version before it, newest wave first; refused whole,
    naming the alias, if a later release or a person moved one since. Exit 1 if any alias did not go back (re-run to
    complete)."""
    from release_train.services.context import ReleaseContext
    from release_train.services.live import LiveTracker
    from trainctl.views import find_release

    if not reason.strip():
        fail("--reason is empty: say why the release is rolled back (it is recorded on the release)", USAGE)
    with guarded():
        target = where.target()
        ledger = target.ledger
        record = find_release(ledger, release_id, target.table_name)
        ctx = ReleaseContext(ledger, record.release_id)
        stages = [s.name for s in ctx.fleet.stages]
        stage = stage or stages[-1]
        if stage not in stages:
            raise CommandError(
                f"--stage {stage!r}: release {release_id} has stages {', '.join(stages)}: pick one of them", USAGE
            )
        if record.status.value == "RUNNING":
            raise CommandError(
                f"release {release_id} is still running: its train could deploy again after the rollback; "
                f"stop it first (trainctl cancel {release_id} --reason ...), then roll back",
                FAILED,
            )
        identity = None if dry_run else target.identity()
        session = _stage_session(target.session, ctx.fleet, stage, stage_profile, where.region)
        functions = Functions(lambda_client(session, concurrency))
        tracker = LiveTracker(ledger, functions)
        checked = plan(tracker.rollback_order(record.release_id, stage), functions, concurrency)
        doc: dict[str, Any] = {
            "release_id": record.release_id,
            "stage": stage,
            "dry_run": dry_run,
            "reason": reason.strip(),
            "identity": identity,
            "refused": checked.refusals,
        }
        if checked.refusals:
            held = [replace(s, state=HELD) if s.state == TO_DO else s for s in checked.steps]
            doc |= {"result": "refused", "aliases": [s.doc() for s in held], "live": []}
            emit(output, doc, _render)
            raise CommandError(
                f"rollback of {release_id} in {stage} refused, nothing changed: " + "; ".join(checked.refusals),
                FAILED,
            )
        if dry_run:
            steps = [replace(s, state=WOULD) if s.state == TO_DO else s for s in checked.steps]
            doc |= {"result": "dry run", "aliases": [s.doc() for s in steps], "live": []}
            emit(output, doc, _render)
            return
        steps = apply(checked.steps, functions, concurrency)
        back = [s.move for s in steps if s.state in (BACK, ALREADY)]
        live = tracker.record_rollback(ctx, stage, back, cli._now()) if back else []
        failed = [s for s in steps if s.state in (FAILED_, HELD)]
        result = "partial" if failed else ("rolled back" if back else "nothing to roll back")
        ledger.add_event(
            record.release_id,
            "rollback",
            {
                "stage": stage,
                "reason": reason.strip(),
                "by": identity,
                "result": result,
                "aliases": [
                    f"{s.move.function}: {s.now.label() if s.now else s.move.after} -> {s.move.before} ({s.state})"
                    + (f": {s.error}" if s.error else "")
                    for s in steps
                ],
            },
            cli._now(),
        )
        doc |= {
            "result": result,
            "aliases": [s.doc() for s in steps],
            "live": [
                {"service": r.service, "commit": r.commit, "release_id": r.release_id, "how": r.how} for r in live
            ],
        }
        emit(output, doc, _render)
        for s in steps:
            if s.state == NEW:
                note(f"{s.move.function}: left on version {s.move.after}: its alias did not exist before {release_id}")
        if failed:
            went = ", ".join(s.move.function for s in steps if s.state in (BACK, ALREADY)) or "none"
            stuck = "; ".join(f"{s.move.function} ({s.error or s.state})" for s in failed)
            raise CommandError(
                f"rollback of {release_id} in {stage} incomplete: back: {went}; not back: {stuck}. "
                f"Re-run trainctl rollback {release_id} to complete it",
                FAILED,
            )


def _stage_session(home: Any, fleet: Fleet, stage: str, profile: str | None, region: str | None) -> Any:
    """Where the stage's aliases are: the ledger's session for a stage in its account, else --stage-profile's, checked
    to be in the stage's account before anything is read there. The target account's train role trusts only the
    tools stack's function roles (accounts/target-account.yaml), so the operator brings credentials of their own there
    (an SSO or IAM profile allowed lambda:GetAlias and lambda:UpdateAlias on the fleet's functions)."""
    from release_train.services.stage_ports import stage_account

    account = stage_account(fleet, stage)
    home_account = str(home.client("sts").get_caller_identity()["Account"]) if account else None
    if account is None or account == home_account:
        if profile is not None:
            raise CommandError(
                f"--stage-profile: stage {stage} is in this account; leave --stage-profile out (--profile serves both)",
                USAGE,
            )
        return home
    if profile is None:
        raise CommandError(
            f"stage {stage} is in account {account}: pass --stage-profile NAME, a profile with credentials in "
            f"{account} allowed lambda:GetAlias and lambda:UpdateAlias there (docs/accounts.md)",
            USAGE,
        )
    session = cli._session(profile, region)
    there = str(session.client("sts").get_caller_identity()["Account"])
    if there != account:
        raise CommandError(
            f"--stage-profile {profile}: its credentials are in account {there}, not {account} where stage {stage} "
            f"runs; pick a profile in {account}",
            USAGE,
        )
    return session


def _render(doc: dict[str, Any]) -> None:
    verb = "would change" if doc["dry_run"] else doc["result"]
    out.print(text(f"rollback {doc['release_id']} in {doc['stage']}: {verb}"), soft_wrap=True)
    if doc["aliases"]:
        table = Table("wave", "service", "function", "alias", "from", "to", "result")
        for a in doc["aliases"]:
            result = f"{a['state']}: {a['error']}" if a["error"] and a["state"] != REFUSED else a["state"]
            table.add_row(*(text(a[k]) for k in ("wave", "service", "function", "alias", "from", "to")), text(result))
        out.print(table)
    for refusal in doc["refused"]:
        out.print(text(f"refused: {refusal}", "red"), soft_wrap=True)
    for r in doc["live"]:
        out.print(text(f"{r['service']} now runs {r['commit'][:12]} ({r['how']})"), soft_wrap=True)
