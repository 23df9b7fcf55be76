"""What is live where: per stage and service, the commit running now, as observed, never assumed. Pure.

A service that declares its Lambda functions (`deploy` in the fleet) is observed through its aliases: the version
each alias points to before and after the service's deploy (the alias journal), and the commit a version was built
from when its description names it (`commit <sha>`, SAM `VersionDescription`). A service without declared functions
can only be known through its build: SUCCEEDED means its commit was deployed, anything else leaves it unknown.
Unknown is a value, shown as such, until an observation settles it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

UNKNOWN = "unknown"
_COMMIT = re.compile(r"\bcommit ([0-9a-f]{7,40})\b")


def commit_in(description: str | None) -> str | None:
    """`release 2026-W48 commit 1a2b3c4` -> `1a2b3c4` (the buildspec passes the commit to SAM VersionDescription)."""
    match = _COMMIT.search(description or "")
    return match.group(1) if match else None


@dataclass(frozen=True)
class AliasMove:
    """One declared function's alias around one service deploy (the alias journal)."""

    stage: str
    service: str
    function: str
    alias: str
    wave: int
    before: str | None  # version the alias pointed to before the wave (None: no such alias yet)
    after: str | None = None  # version after the wave (None: not observed yet)
    rolled_back: bool = False

    @property
    def moved(self) -> bool:
        return self.after is not None and self.after != self.before


@dataclass(frozen=True)
class Live:
    """What one service runs in one stage."""

    stage: str
    service: str
    commit: str  # a commit, or UNKNOWN
    release_id: str | None  # the release that deployed it (None: from before the train knew it)
    how: str  # how the train knows: "aliases", "build", "rollback", or why it does not
    functions: dict[str, str] = field(default_factory=dict)  # function -> version behind its alias
    previous_commit: str | None = None  # what ran before `release_id` moved it (what a rollback returns to)
    previous_release: str | None = None
    observed_at: str = ""

    @property
    def known(self) -> bool:
        return self.commit != UNKNOWN


def after_deploy(
    stage: str,
    service: str,
    commit: str,
    release_id: str,
    build_status: str,
    moves: list[AliasMove],
    commits_of_versions: dict[tuple[str, str], str | None],
    before: Live | None,
    now: str,
) -> Live:
    """What the service runs in `stage` now, from the build's verdict and the aliases as last observed.

    `commits_of_versions` maps (function, version the alias points to) to the commit the version's description names
    (None when it names none). `before` is what the service ran before this release touched it.
    - every alias moved, none to a version of another commit, and either the build SUCCEEDED or every version names
      this commit: the new commit (a stopped build whose deployment finished is known this way);
    - no alias moved: what ran before (from the versions' descriptions if they agree, else the previous record);
    - anything else: unknown, saying why.
    """
    previous_commit = before.commit if before else None
    previous_release = before.release_id if before else None

    def record(live_commit: str, how: str, versions: dict[str, str], deployed_by: str | None = release_id) -> Live:
        return Live(stage, service, live_commit, deployed_by, how, versions, previous_commit, previous_release, now)

    if not moves:  # nothing to observe: the build is all the train knows
        if build_status == "SUCCEEDED":
            return record(commit, "build", {})
        return record(UNKNOWN, f"build {build_status}; no declared function", {})
    if any(m.after is None for m in moves):
        return record(UNKNOWN, "aliases not observed", {})
    versions = {m.function: str(m.after) for m in moves}
    named = [commits_of_versions.get((m.function, str(m.after))) for m in moves]
    moved = [m for m in moves if m.moved]
    if len(moved) == len(moves):
        foreign = [c for c in named if c is not None and not commit.startswith(c)]
        if not foreign and (build_status == "SUCCEEDED" or (all(named) and len(set(named)) == 1)):
            return record(commit, "aliases", versions)
    if not moved:
        back = "aliases on their previous versions"
        if before is not None and before.known:
            return Live(
                stage,
                service,
                before.commit,
                before.release_id,
                back,
                versions,
                before.previous_commit,
                before.previous_release,
                now,
            )
        if all(named) and len(set(named)) == 1:
            return Live(stage, service, str(named[0]), None, f"{back} (version description)", versions, observed_at=now)
    names = ", ".join(m.function for m in moved) or "none"
    return record(UNKNOWN, f"build {build_status}; aliases moved: {names}", versions)


def summary(stage: str, riding: dict[str, str], live: dict[str, Live]) -> tuple[str, list[str]]:
    """'prod runs new code for 4 of 6 services: a, b, c, d' and one line per service (for the ledger and people)."""
    new = sorted(s for s, c in riding.items() if s in live and live[s].commit == c)
    unknown = sorted(s for s in riding if s in live and not live[s].known)
    lines = []
    for service in sorted(riding):
        record = live.get(service)
        if record is None:
            lines.append(f"{service}: not deployed by this release")
        elif not record.known:
            lines.append(f"{service}: unknown ({record.how})")
        elif record.commit == riding[service]:
            lines.append(f"{service}: new {record.commit[:12]}")
        else:
            lines.append(f"{service}: previous {record.commit[:12]}")
    head = f"{stage} runs new code for {len(new)} of {len(riding)} services" + (f": {', '.join(new)}" if new else "")
    if unknown:
        head += f"; unknown for {', '.join(unknown)}"
    return head, lines
