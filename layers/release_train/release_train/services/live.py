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


class LiveTracker:
    def __init__(self, ledger: Ledger, functions: FunctionsPort) -> None:
        self._ledger, self._functions = ledger, functions

    def before_wave(self, ctx: ReleaseContext, stage: str, wave: int, entries: list[ManifestEntry]) -> None:
        """Journal each declared function's alias version before the wave deploys it."""
        moves = []
        for entry in entries:
            service = ctx.fleet.service(entry.service)
            if service.deploy is None:
                continue
            for function in ctx.fleet.functions_for(service, stage):
                before = self._functions.alias_version(function, service.deploy.alias)
                moves.append(AliasMove(stage, entry.service, function, service.deploy.alias, wave, before))
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
        release_id = ctx.record.release_id
        journal = [m for m in self._ledger.alias_moves(release_id, stage) if wave is None or m.wave == wave]
        observed = [replace(m, after=self._functions.alias_version(m.function, m.alias)) for m in journal]
        self._ledger.put_alias_moves(release_id, observed)
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
                (m.function, str(m.after)): self._functions.commit_of(m.function, str(m.after))
                for m in moves
                if m.after is not None
            }
            status = statuses[service] if statuses is not None else "STOPPED"
            records.append(
                after_deploy(stage, service, commits[service], release_id, status, moves, versions, before, iso(now))
            )
        self._ledger.set_live(ctx.fleet.fleet, records)
        return records

    def roll_back(self, ctx: ReleaseContext, stage: str, now: datetime) -> list[str]:
        """Point every alias this release moved in `stage` back to its previous version, newest wave first; skip (and
        say so) an alias someone else moved since. Returns what was done, one line per function."""
        release_id = ctx.record.release_id
        done, moves = [], []
        for move in sorted(self._ledger.alias_moves(release_id, stage), key=lambda m: (-m.wave, m.function)):
            if not move.moved or move.before is None:
                continue
            now_at = self._functions.alias_version(move.function, move.alias)
            if now_at != move.after:
                done.append(f"{move.function}: not rolled back, its alias points to {now_at}, not {move.after}")
                continue
            self._functions.point(move.function, move.alias, move.before)
            moves.append(replace(move, rolled_back=True))
            done.append(f"{move.function}: {move.after} -> {move.before}")
        self._ledger.put_alias_moves(release_id, moves)
        self.observe(ctx, stage, now)
        return done

    def report(self, fleet: Fleet, stage: str, riding: dict[str, str]) -> tuple[str, list[str], dict[str, Live]]:
        live = self._ledger.live(fleet.fleet).get(stage, {})
        head, lines = summary(stage, riding, live)
        return head, lines, live


def _previous(record: Live) -> Live | None:
    if record.previous_commit is None:
        return None
    return Live(record.stage, record.service, record.previous_commit, record.previous_release, "before this release")
