"""Observing what is live, journaling the aliases a deploy moves, putting them back. Shared by the use cases that
deploy (LoadWave, RecordWave) and those that end a release (RecordFailure, CleanupExecution)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from release_train.adapters.ledger import Ledger
from release_train.domain.fleet import Fleet
from release_train.domain.live import AliasMove, Live, after_deploy, summary
from release_train.domain.release import ManifestEntry
from release_train.services.context import ReleaseContext, iso
from release_train.services.ports import FunctionsPort
from release_train.services.stage_ports import PerAccount, per_account, stage_account


class LiveTracker:
    def __init__(self, ledger: Ledger, functions: FunctionsPort | PerAccount[FunctionsPort]) -> None:
        self._ledger, self._by_account = ledger, per_account(functions)

    def _functions(self, ctx: ReleaseContext, stage: str) -> FunctionsPort:
        """The stage's aliases live in the stage's account (docs/accounts.md): read and move them there."""
        return self._by_account(stage_account(ctx.fleet, stage))

    def before_wave(self, ctx: ReleaseContext, stage: str, wave: int, entries: list[ManifestEntry]) -> None:
        """Journal each declared function's alias version before the wave deploys it."""
        moves, functions = [], self._functions(ctx, stage)
        for entry in entries:
            service = ctx.fleet.service(entry.service)
            deploy = service.lambda_deploy  # an ECS service has no alias: nothing to journal (CodeDeploy rolls it back)
            if deploy is None:
                continue
            for function in ctx.fleet.functions_for(service, stage):
                before = functions.alias_version(function, deploy.alias)
                moves.append(AliasMove(stage, entry.service, function, deploy.alias, wave, before))
        self._ledger.put_alias_moves(ctx.record.release_id, moves)

    def after_wave(
        self, ctx: ReleaseContext, stage: str, wave: int, statuses: dict[str, str], now: datetime
    ) -> list[Live]:
        """Observe the aliases after the wave, complete the journal, and record what each service runs now."""
        return self._settle(ctx, stage, statuses, now, wave)

    def observe(self, ctx: ReleaseContext, stage: str, now: datetime) -> list[Live]:
        """Re-read the aliases this release journaled in `stage` (after a stop: did a rollback land?). Services whose
        record this release already knows to run its commit, with their aliases still there, are left as they are."""
        return self._settle(ctx, stage, None, now, None)

    def _settle(
        self, ctx: ReleaseContext, stage: str, statuses: dict[str, str] | None, now: datetime, wave: int | None
    ) -> list[Live]:
        release_id, functions = ctx.record.release_id, self._functions(ctx, stage)
        journal = [m for m in self._ledger.alias_moves(release_id, stage) if wave is None or m.wave == wave]
        observed = [replace(m, after=functions.alias_version(m.function, m.alias)) for m in journal]
        # An alias found on a version neither this release nor its predecessor put there was moved by someone since:
        # the journal keeps the version this release deployed: a later rollback never takes the stranger's as its own.
        kept = [o for o, m in zip(observed, journal, strict=True) if m.after is None or o.after in (m.before, m.after)]
        self._ledger.put_alias_moves(release_id, kept)
        current = self._ledger.live(ctx.fleet.fleet).get(stage, {})
        commits = {e.service: e.commit for e in ctx.manifest}
        services = sorted(statuses) if statuses is not None else sorted({m.service for m in observed})
        records = []
        for service in services:
            moves = [m for m in observed if m.service == service]
            record = current.get(service)
            mine = record is not None and record.release_id == release_id
            if statuses is None and mine and record is not None and record.known and all(m.moved for m in moves):
                continue
            before = _previous(record) if mine and record is not None else record
            versions = {
                (m.function, str(m.after)): functions.commit_of(m.function, str(m.after))
                for m in moves
                if m.after is not None
            }
            status = statuses[service] if statuses is not None else "STOPPED"
            live = after_deploy(stage, service, commits[service], release_id, status, moves, versions, before, iso(now))
            if live.known and any(m.rolled_back for m in moves) and not any(m.moved for m in moves):
                live = replace(live, how="rollback")  # back on what ran before because a rollback put it there
            records.append(live)
        self._ledger.set_live(ctx.fleet.fleet, records)
        return records

    def roll_back(self, ctx: ReleaseContext, stage: str, now: datetime) -> list[str]:
        """Point every alias this release moved in `stage` back to its previous version, newest wave first; skip (and
        say so) an alias someone else moved since. Returns what was done, one line per function."""
        done, moves, functions = [], [], self._functions(ctx, stage)
        for move in self.rollback_order(ctx.record.release_id, stage):
            if not move.moved or move.before is None:
                continue
            now_at = functions.alias_version(move.function, move.alias)
            if now_at != move.after:
                done.append(f"{move.function}: not rolled back, its alias points to {now_at}, not {move.after}")
                continue
            functions.point(move.function, move.alias, move.before)
            moves.append(move)
            done.append(f"{move.function}: {move.after} -> {move.before}")
        self.record_rollback(ctx, stage, moves, now)
        return done

    def rollback_order(self, release_id: str, stage: str) -> list[AliasMove]:
        """The release's alias journal for `stage` in the order a rollback takes it: newest wave first (later waves may
        depend on earlier ones, ADR 0006), by function within a wave. Shared with `trainctl rollback`."""
        return sorted(self._ledger.alias_moves(release_id, stage), key=lambda m: (-m.wave, m.function))

    def record_rollback(self, ctx: ReleaseContext, stage: str, back: list[AliasMove], now: datetime) -> list[Live]:
        """Mark the journal entries whose alias is back on `before`, then observe the stage again: a service whose
        aliases are all back is recorded live `how: rollback` (status and the next PlanRelease read it)."""
        self._ledger.put_alias_moves(ctx.record.release_id, [replace(m, rolled_back=True) for m in back])
        return self.observe(ctx, stage, now)

    def report(self, fleet: Fleet, stage: str, riding: dict[str, str]) -> tuple[str, list[str], dict[str, Live]]:
        live = self._ledger.live(fleet.fleet).get(stage, {})
        head, lines = summary(stage, riding, live)
        return head, lines, live


def _previous(record: Live) -> Live | None:
    if record.previous_commit is None:
        return None
    return Live(record.stage, record.service, record.previous_commit, record.previous_release, "before this release")
