"""The ledger: one DynamoDB table, single-table design (see docs/ledger.md).

| PK                 | SK                      | what                                                  |
|--------------------|-------------------------|-------------------------------------------------------|
| FLEET#<fleet>      | LOCK                    | the train lock: holder execution ARN + release id     |
| FLEET#<fleet>      | BASELINE                | the last good release and its {service: commit}       |
| FLEET#<fleet>      | HOLD#<service or *>     | an operator hold                                      |
| FLEET#<fleet>      | LIVE#<stage>#<service>  | what the service runs in the stage, as observed       |
| RELEASE#<id>       | META                    | status, reason, execution, times, stages (GSI1: list) |
| RELEASE#<id>       | PINNED#<nnnn>           | one part of the pinned fleet (zlib-compressed JSON)   |
| RELEASE#<id>       | SVC#<service>           | pinned commit, previous commit, wave, source          |
| RELEASE#<id>       | BUILD#<stage>#<service> | build id, status, commit                              |
| RELEASE#<id>       | GATE#<stage>            | verdict, reasons, evidence                            |
| RELEASE#<id>       | APPROVAL#<stage>        | task token, status, packet, decided by                |
| RELEASE#<id>       | ALIAS#<stage>#<wave>#<fn>| the alias journal: version before and after the deploy|
| RELEASE#<id>       | EVENT#<iso time>#<n>#<r>| what happened, when (n: per-process order, r: random) |
| EXEC#<arn>         | META                    | which release an execution runs (for the clean-up)    |

GSI1 (GSI1PK = FLEET#<fleet>, GSI1SK = <created iso>#<id>) lists a fleet's releases newest first.
"""

from __future__ import annotations

import itertools
import json
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from release_train.adapters.aws import error_code
from release_train.domain.errors import InvalidInput
from release_train.domain.live import AliasMove, Live
from release_train.domain.release import Hold, ManifestEntry, Status

_event_counter = itertools.count()

# The pinned fleet outgrows one item: 2,000 services are ~0.5 MB of JSON, and "The maximum item size in DynamoDB is
# 400 KB, which includes both attribute name binary length (UTF-8 length) and attribute value lengths (again binary
# length)" (Developer Guide, "Constraints in Amazon DynamoDB", ServiceQuotas.html; 1 KB = 1,024 bytes there). So it is
# stored zlib-compressed (Binary: its raw bytes count, not their base64) in PINNED#<nnnn> parts of at most
# PINNED_PART_BYTES, each ~100 KB under the item limit with its keys.
PINNED_PART_BYTES = 300_000
# The parts are written in one TransactWriteItems with META and EXEC#: "up to 100 action requests" whose "aggregate
# size ... cannot exceed 4 MB" (TransactWriteItems API reference). 12 parts (3.6 MB) + META + EXEC# stay under both.
PINNED_MAX_PARTS = 12
_PINNED_PREFIX = "PINNED#"


@dataclass(frozen=True)
class Lock:
    release_id: str
    execution_arn: str
    acquired_at: str


@dataclass
class ReleaseRecord:
    release_id: str
    fleet: str
    status: Status
    reason: str
    execution_arn: str
    created_at: str
    ended_at: str | None = None
    failed_state: str | None = None
    stages: list[str] = field(default_factory=list)
    requested_by: str = ""
    fleet_version: str | None = None


@dataclass(frozen=True)
class BuildRecord:
    stage: str
    service: str
    status: str
    build_id: str | None
    commit: str
    wave: int
    error: str | None = None


@dataclass(frozen=True)
class ApprovalRecord:
    stage: str
    status: str  # PENDING, APPROVED, REJECTED, SUPERSEDED, TIMED_OUT, CANCELLED, EXPIRED
    task_token: str
    requested_at: str
    decided_by: str | None = None
    reason: str | None = None
    identity: str | None = None  # the IAM principal that answered, as AWS authenticated it


def _conditional(write: Callable[[], object]) -> bool:
    """Run one conditional write: True if it happened, False if its condition did not hold (someone got there first)."""
    try:
        write()
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise
    return True


def _condition_failed(exc: ClientError, index: int) -> bool:
    """A transaction cancelled because its item `index` failed its condition. A failed condition cancels the whole
    transaction: TransactionCanceledException, whose CancellationReasons list one entry per item in request order,
    `ConditionalCheckFailed` for that item and `None` for the others (TransactWriteItems API reference)."""
    if error_code(exc) != "TransactionCanceledException":
        return False
    reasons = exc.response.get("CancellationReasons") or []
    return len(reasons) > index and reasons[index].get("Code") == "ConditionalCheckFailed"


def _pinned_parts(fleet: dict[str, Any]) -> list[bytes]:
    """The fleet as compact JSON, zlib-compressed, cut into PINNED_PART_BYTES parts. A fleet too large for one
    transaction is refused before anything is written."""
    packed = zlib.compress(json.dumps(fleet, separators=(",", ":")).encode(), 9)
    parts = [packed[i : i + PINNED_PART_BYTES] for i in range(0, len(packed), PINNED_PART_BYTES)]
    if len(parts) > PINNED_MAX_PARTS:
        raise InvalidInput(
            "the fleet",
            [
                f"compressed, it is {len(packed):,} bytes; a release pins at most "
                f"{PINNED_MAX_PARTS * PINNED_PART_BYTES:,} (one DynamoDB transaction, 4 MB): split the fleet"
            ],
        )
    return parts


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _ordered(prefix: str, now: datetime) -> str:
    """A sort key in write order: the second, then a counter for the order within it, then a random part so two
    cold-started writers (both counting from 0) never collide."""
    return f"{prefix}#{_iso(now)}#{next(_event_counter):06d}#{uuid.uuid4().hex[:8]}"


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; JSON and callers want int/float."""
    return json.loads(json.dumps(value, default=lambda d: int(d) if d == int(d) else float(d)))


class Ledger:
    def __init__(self, table: Any) -> None:
        # `table` is a boto3 DynamoDB Table resource; built by the handler, so tests can pass any table.
        self._t = table

    # --- lock ---------------------------------------------------------------------------------------------------

    def acquire_lock(self, fleet: str, release_id: str, execution_arn: str, now: datetime) -> Lock | None:
        """Take the lock, or return the current holder if someone else has it (never waits, never queues)."""
        taken = self._put_lock(
            fleet,
            release_id,
            execution_arn,
            now,
            "attribute_not_exists(PK) OR execution_arn = :me",
            {":me": execution_arn},
        )
        return None if taken else self.lock(fleet)

    def steal_lock(self, fleet: str, from_execution: str, release_id: str, execution_arn: str, now: datetime) -> bool:
        """Reclaim a lock whose holder has ended — only if it is still that holder's (no lost update)."""
        return self._put_lock(fleet, release_id, execution_arn, now, "execution_arn = :old", {":old": from_execution})

    def _put_lock(
        self, fleet: str, release_id: str, execution_arn: str, now: datetime, condition: str, values: dict[str, str]
    ) -> bool:
        """One conditional write; False when the condition does not hold (someone else has the lock)."""
        return _conditional(
            lambda: self._t.put_item(
                Item={
                    "PK": f"FLEET#{fleet}",
                    "SK": "LOCK",
                    "release_id": release_id,
                    "execution_arn": execution_arn,
                    "acquired_at": _iso(now),
                },
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        )

    def lock(self, fleet: str) -> Lock | None:
        item = self._t.get_item(Key={"PK": f"FLEET#{fleet}", "SK": "LOCK"}, ConsistentRead=True).get("Item")
        if not item:
            return None
        return Lock(item["release_id"], item["execution_arn"], item["acquired_at"])

    def release_lock(self, fleet: str, execution_arn: str) -> bool:
        """Release only our own lock: a late clean-up must never free a newer train's lock."""
        return _conditional(
            lambda: self._t.delete_item(
                Key={"PK": f"FLEET#{fleet}", "SK": "LOCK"},
                ConditionExpression="execution_arn = :me",
                ExpressionAttributeValues={":me": execution_arn},
            )
        )

    # --- releases -----------------------------------------------------------------------------------------------

    def create_release(self, release: ReleaseRecord, pinned_fleet: dict[str, Any]) -> bool:
        """False when the id already exists (the same schedule firing twice). Pins the fleet for the release.

        META (conditional), the EXEC# item and the fleet's PINNED# parts are one transaction: a duplicate changes none
        of them (a running release keeps its pinned fleet), and no reader sees a release without its whole fleet."""
        pk = f"RELEASE#{release.release_id}"
        parts = _pinned_parts(pinned_fleet)
        meta: dict[str, Any] = {
            "PK": pk,
            "SK": "META",
            "GSI1PK": f"FLEET#{release.fleet}",
            "GSI1SK": f"{release.created_at}#{release.release_id}",
            "release_id": release.release_id,
            "fleet": release.fleet,
            "status": release.status.value,
            "reason": release.reason,
            "execution_arn": release.execution_arn,
            "created_at": release.created_at,
            "stages": release.stages,
            "requested_by": release.requested_by,
            "pinned_parts": len(parts),
        }
        if release.fleet_version:
            meta["fleet_version"] = release.fleet_version
        puts: list[dict[str, Any]] = [
            {"Item": meta, "ConditionExpression": "attribute_not_exists(PK)"},
            {"Item": {"PK": f"EXEC#{release.execution_arn}", "SK": "META", "release_id": release.release_id}},
            *(
                {"Item": {"PK": pk, "SK": f"{_PINNED_PREFIX}{n:04d}", "fleet_zlib": part}}
                for n, part in enumerate(parts)
            ),
        ]
        try:
            # The Table resource's client serializes plain Python values (bytes become Binary) itself.
            self._t.meta.client.transact_write_items(
                TransactItems=[{"Put": {"TableName": self._t.name, **put}} for put in puts]
            )
        except ClientError as exc:
            if _condition_failed(exc, 0):
                return False
            raise
        return True

    def release(self, release_id: str) -> ReleaseRecord | None:
        item = self._t.get_item(Key={"PK": f"RELEASE#{release_id}", "SK": "META"}, ConsistentRead=True).get("Item")
        if not item:
            return None
        return ReleaseRecord(
            release_id=item["release_id"],
            fleet=item["fleet"],
            status=Status(item["status"]),
            reason=item.get("reason", ""),
            execution_arn=item["execution_arn"],
            created_at=item["created_at"],
            ended_at=item.get("ended_at"),
            failed_state=item.get("failed_state"),
            stages=list(item.get("stages", [])),
            requested_by=item.get("requested_by", ""),
            fleet_version=item.get("fleet_version"),
        )

    def pinned_fleet(self, release_id: str) -> dict[str, Any]:
        """The fleet pinned when the release was planned: META and its PINNED# parts in one strongly consistent Query
        (paged: the parts may add up to more than a page's 1 MB). A release written before the parts existed keeps
        the fleet in META's `fleet_json`."""
        meta: dict[str, Any] | None = None
        parts: list[bytes] = []
        kwargs: dict[str, Any] = {
            # No other SK sorts between META and the parts; "PINNED$" ("$" right after "#") ends the range after them.
            "KeyConditionExpression": Key("PK").eq(f"RELEASE#{release_id}") & Key("SK").between("META", "PINNED$"),
            "ProjectionExpression": "SK, fleet_json, pinned_parts, fleet_zlib",
            "ConsistentRead": True,
        }
        while True:
            page = self._t.query(**kwargs)
            for item in page.get("Items", []):
                if item["SK"] == "META":
                    meta = item
                elif item["SK"].startswith(_PINNED_PREFIX):
                    parts.append(bytes(item["fleet_zlib"].value))  # in key order: PINNED#0000, 0001, ...
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        if meta is None:
            raise KeyError(f"release {release_id} is not in the ledger")
        if "fleet_json" in meta:
            legacy: dict[str, Any] = json.loads(meta["fleet_json"])
            return legacy
        expected = int(meta.get("pinned_parts", 0))
        if len(parts) != expected:
            # Cannot happen after one transaction; say so rather than hand back half a fleet.
            raise RuntimeError(f"release {release_id}: {len(parts)} of {expected} pinned fleet parts in the ledger")
        pinned: dict[str, Any] = json.loads(zlib.decompress(b"".join(parts)))
        return pinned

    def release_for_execution(self, execution_arn: str) -> str | None:
        item = self._t.get_item(Key={"PK": f"EXEC#{execution_arn}", "SK": "META"}).get("Item")
        return str(item["release_id"]) if item else None

    def list_releases(self, fleet: str, limit: int = 20) -> list[ReleaseRecord]:
        page = self._t.query(
            IndexName="GSI1",
            KeyConditionExpression=Key("GSI1PK").eq(f"FLEET#{fleet}"),
            ScanIndexForward=False,
            Limit=limit,
        )
        # GSI1 projects KEYS_ONLY (template.yaml): the id comes from the table key, the record from the base table.
        records = [self.release(item["PK"].removeprefix("RELEASE#")) for item in page.get("Items", [])]
        return [r for r in records if r is not None]

    def close_release(
        self, release_id: str, status: Status, reason: str, now: datetime, failed_state: str | None = None
    ) -> bool:
        """Move RUNNING -> terminal exactly once. False if it was already terminal (at-least-once callers)."""
        assert status.terminal
        names = {"#s": "status"}
        values: dict[str, Any] = {":s": status.value, ":r": reason, ":t": _iso(now), ":running": Status.RUNNING.value}
        update = "SET #s = :s, reason = :r, ended_at = :t"
        if failed_state:
            update += ", failed_state = :f"
            values[":f"] = failed_state
        return _conditional(
            lambda: self._t.update_item(
                Key={"PK": f"RELEASE#{release_id}", "SK": "META"},
                UpdateExpression=update,
                ConditionExpression="#s = :running",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        )

    # --- manifest -----------------------------------------------------------------------------------------------

    def put_manifest(self, release_id: str, entries: list[ManifestEntry]) -> None:
        self._put_all(
            {
                "PK": f"RELEASE#{release_id}",
                "SK": f"SVC#{e.service}",
                "service": e.service,
                "commit": e.commit,
                "wave": e.wave,
                "source": e.source,
                "previous_commit": e.previous_commit,
            }
            for e in entries
        )

    def _put_all(self, items: Iterable[dict[str, Any]]) -> None:
        """Batch-write items, leaving out empty attributes (DynamoDB stores no nulls worth reading back)."""
        with self._t.batch_writer() as batch:
            for item in items:
                batch.put_item(Item={k: v for k, v in item.items() if v not in (None, "")})

    def manifest(self, release_id: str) -> list[ManifestEntry]:
        return [
            ManifestEntry(
                service=i["service"],
                commit=i["commit"],
                previous_commit=i.get("previous_commit"),
                wave=int(i["wave"]),
                source=i.get("source", ""),
            )
            for i in self._query(f"RELEASE#{release_id}", "SVC#")
        ]

    # --- builds, gates, approvals -------------------------------------------------------------------------------

    def record_builds(self, release_id: str, records: list[BuildRecord]) -> None:
        self._put_all(
            {
                "PK": f"RELEASE#{release_id}",
                "SK": f"BUILD#{r.stage}#{r.service}",
                "stage": r.stage,
                "service": r.service,
                "status": r.status,
                "commit": r.commit,
                "wave": r.wave,
                "build_id": r.build_id,
                "error": r.error[:2000] if r.error else None,
            }
            for r in records
        )

    def builds(self, release_id: str, stage: str | None = None) -> list[BuildRecord]:
        prefix = f"BUILD#{stage}#" if stage else "BUILD#"
        return [
            BuildRecord(
                stage=i["stage"],
                service=i["service"],
                status=i["status"],
                build_id=i.get("build_id"),
                commit=i["commit"],
                wave=int(i["wave"]),
                error=i.get("error"),
            )
            for i in self._query(f"RELEASE#{release_id}", prefix)
        ]

    def put_gate(self, release_id: str, stage: str, verdict: str, reasons: list[str], evidence: dict[str, Any]) -> None:
        self._t.put_item(
            Item={
                "PK": f"RELEASE#{release_id}",
                "SK": f"GATE#{stage}",
                "stage": stage,
                "verdict": verdict,
                "reasons": reasons,
                "evidence": json.dumps(evidence, default=str),
            }
        )

    def gates(self, release_id: str) -> list[dict[str, Any]]:
        out = []
        for i in self._query(f"RELEASE#{release_id}", "GATE#"):
            out.append(
                {
                    "stage": i["stage"],
                    "verdict": i["verdict"],
                    "reasons": list(i.get("reasons", [])),
                    "evidence": json.loads(i["evidence"]),
                }
            )
        return out

    def put_approval(self, release_id: str, approval: ApprovalRecord, packet: dict[str, Any]) -> None:
        self._t.put_item(
            Item={
                "PK": f"RELEASE#{release_id}",
                "SK": f"APPROVAL#{approval.stage}",
                "stage": approval.stage,
                "status": approval.status,
                "task_token": approval.task_token,
                "requested_at": approval.requested_at,
                "packet": json.dumps(packet, default=str),
            }
        )

    def approval(self, release_id: str, stage: str) -> ApprovalRecord | None:
        item = self._t.get_item(Key={"PK": f"RELEASE#{release_id}", "SK": f"APPROVAL#{stage}"}).get("Item")
        if not item:
            return None
        return ApprovalRecord(
            stage=item["stage"],
            status=item["status"],
            task_token=item["task_token"],
            requested_at=item["requested_at"],
            decided_by=item.get("decided_by"),
            reason=item.get("reason"),
            identity=item.get("identity") or None,
        )

    def pending_approvals(self, release_id: str) -> list[ApprovalRecord]:
        records = [self.approval(release_id, i["stage"]) for i in self._query(f"RELEASE#{release_id}", "APPROVAL#")]
        return [r for r in records if r is not None and r.status == "PENDING"]

    def decide_approval(
        self,
        release_id: str,
        stage: str,
        status: str,
        by: str,
        reason: str,
        expected: str = "PENDING",
        identity: str = "",
    ) -> bool:
        """`expected` -> `status`, once (PENDING -> decided by default). False if someone moved it first."""
        return _conditional(
            lambda: self._t.update_item(
                Key={"PK": f"RELEASE#{release_id}", "SK": f"APPROVAL#{stage}"},
                UpdateExpression="SET #s = :s, decided_by = :b, reason = :r, #i = :i",
                ConditionExpression="#s = :pending",
                ExpressionAttributeNames={"#s": "status", "#i": "identity"},
                ExpressionAttributeValues={
                    ":s": status,
                    ":b": by,
                    ":r": reason,
                    ":pending": expected,
                    ":i": identity,
                },
            )
        )

    def finalize(self, release_id: str, fleet: str, commits: dict[str, str], now: datetime) -> bool:
        """RUNNING -> SUCCEEDED and the baseline moved, in one transaction: a finalize that lands after a cancel (the
        close fails its condition) never moves the baseline. False when the release was not RUNNING."""
        _, baseline = self.baseline(fleet)
        baseline.update(commits)
        # The Table resource's client serializes plain Python values itself (boto3 DynamoDB transformation).
        client = self._t.meta.client
        try:
            client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._t.name,
                            "Key": {"PK": f"RELEASE#{release_id}", "SK": "META"},
                            "UpdateExpression": "SET #s = :s, reason = :r, ended_at = :t",
                            "ConditionExpression": "#s = :running",
                            "ExpressionAttributeNames": {"#s": "status"},
                            "ExpressionAttributeValues": {
                                ":s": Status.SUCCEEDED.value,
                                ":r": "all stages promoted",
                                ":t": _iso(now),
                                ":running": Status.RUNNING.value,
                            },
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._t.name,
                            "Item": {
                                "PK": f"FLEET#{fleet}",
                                "SK": "BASELINE",
                                "release_id": release_id,
                                "commits": baseline,
                            },
                        }
                    },
                ]
            )
        except ClientError as exc:
            # A failed condition cancels the whole transaction (TransactWriteItems API reference).
            if error_code(exc) == "TransactionCanceledException":
                return False
            raise
        return True

    # --- what is live, the alias journal ---------------------------------------------------------------------------

    def set_live(self, fleet: str, records: Iterable[Live]) -> None:
        self._put_all(
            {
                "PK": f"FLEET#{fleet}",
                "SK": f"LIVE#{r.stage}#{r.service}",
                "stage": r.stage,
                "service": r.service,
                "commit": r.commit,
                "release_id": r.release_id,
                "how": r.how,
                "functions": json.dumps(r.functions),
                "previous_commit": r.previous_commit,
                "previous_release": r.previous_release,
                "observed_at": r.observed_at,
            }
            for r in records
        )

    def live(self, fleet: str) -> dict[str, dict[str, Live]]:
        """stage -> service -> what it runs (strongly consistent)."""
        out: dict[str, dict[str, Live]] = {}
        for i in self._query(f"FLEET#{fleet}", "LIVE#"):
            out.setdefault(i["stage"], {})[i["service"]] = Live(
                stage=i["stage"],
                service=i["service"],
                commit=i["commit"],
                release_id=i.get("release_id"),
                how=i.get("how", ""),
                functions=json.loads(i.get("functions") or "{}"),
                previous_commit=i.get("previous_commit"),
                previous_release=i.get("previous_release"),
                observed_at=i.get("observed_at", ""),
            )
        return out

    def put_alias_moves(self, release_id: str, moves: Iterable[AliasMove]) -> None:
        self._put_all(
            {
                "PK": f"RELEASE#{release_id}",
                "SK": f"ALIAS#{m.stage}#{m.wave:03d}#{m.function}",
                "stage": m.stage,
                "service": m.service,
                "function": m.function,
                "alias": m.alias,
                "wave": m.wave,
                "before": m.before,
                "after": m.after,
                "rolled_back": m.rolled_back or None,
            }
            for m in moves
        )

    def alias_moves(self, release_id: str, stage: str | None = None) -> list[AliasMove]:
        prefix = f"ALIAS#{stage}#" if stage else "ALIAS#"
        return [
            AliasMove(
                stage=i["stage"],
                service=i["service"],
                function=i["function"],
                alias=i["alias"],
                wave=int(i["wave"]),
                before=i.get("before"),
                after=i.get("after"),
                rolled_back=bool(i.get("rolled_back", False)),
            )
            for i in self._query(f"RELEASE#{release_id}", prefix)
        ]

    # --- baseline, holds, events --------------------------------------------------------------------------------

    def baseline(self, fleet: str) -> tuple[str | None, dict[str, str]]:
        item = self._t.get_item(Key={"PK": f"FLEET#{fleet}", "SK": "BASELINE"}, ConsistentRead=True).get("Item")
        if not item:
            return None, {}
        return item["release_id"], dict(item.get("commits", {}))

    def set_baseline(self, fleet: str, release_id: str, commits: dict[str, str]) -> None:
        # Merge: services that did not ride keep their previous good commit.
        _, current = self.baseline(fleet)
        current.update(commits)
        self._t.put_item(Item={"PK": f"FLEET#{fleet}", "SK": "BASELINE", "release_id": release_id, "commits": current})

    def put_hold(self, fleet: str, hold: Hold, now: datetime) -> None:
        self._t.put_item(
            Item={
                "PK": f"FLEET#{fleet}",
                "SK": f"HOLD#{hold.scope}",
                "scope": hold.scope,
                "reason": hold.reason,
                "by": hold.by,
                "identity": hold.identity,
                "at": _iso(now),
            }
        )
        self._audit(fleet, "hold_put", hold, now)

    def remove_hold(self, fleet: str, hold: Hold, now: datetime) -> None:
        """Lifting a hold is audited like putting one: who (name and IAM identity), why, and what it said."""
        old = self._t.get_item(Key={"PK": f"FLEET#{fleet}", "SK": f"HOLD#{hold.scope}"}, ConsistentRead=True).get(
            "Item"
        )
        self._t.delete_item(Key={"PK": f"FLEET#{fleet}", "SK": f"HOLD#{hold.scope}"})
        self._audit(fleet, "hold_removed", hold, now, {"was": old["reason"] if old else None})

    def _audit(self, fleet: str, action: str, hold: Hold, now: datetime, extra: dict[str, Any] | None = None) -> None:
        fields = {"scope": hold.scope, "reason": hold.reason, "by": hold.by, "identity": hold.identity}
        self.audit_action(fleet, action, {**fields, **(extra or {})}, now)

    def audit_action(self, fleet: str, action: str, fields: dict[str, Any], now: datetime) -> None:
        """An operator action on the fleet (a hold put or lifted, break glass), in the order it happened."""
        self._t.put_item(
            Item={"PK": f"FLEET#{fleet}", "SK": _ordered("AUDIT", now), "action": action, "at": _iso(now), **fields}
        )

    def audit(self, fleet: str) -> list[dict[str, Any]]:
        """The fleet's operator actions (holds put and lifted, break glass), oldest first."""
        return [{k: v for k, v in i.items() if k not in {"PK", "SK"}} for i in self._query(f"FLEET#{fleet}", "AUDIT#")]

    def holds(self, fleet: str) -> list[Hold]:
        return [
            Hold(i["scope"], i["reason"], i["by"], i.get("identity", ""))
            for i in self._query(f"FLEET#{fleet}", "HOLD#")
        ]

    def add_event(self, release_id: str, kind: str, detail: dict[str, Any], now: datetime) -> None:
        self._t.put_item(
            Item={
                "PK": f"RELEASE#{release_id}",
                "SK": _ordered("EVENT", now),
                "kind": kind,
                "at": _iso(now),
                "detail": json.dumps(detail, default=str),
            }
        )

    def events(self, release_id: str) -> list[dict[str, Any]]:
        return [
            {"kind": i["kind"], "at": i["at"], "detail": json.loads(i["detail"])}
            for i in self._query(f"RELEASE#{release_id}", "EVENT#")
        ]

    def _query(self, pk: str, sk_prefix: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key("PK").eq(pk) & Key("SK").begins_with(sk_prefix),
            "ConsistentRead": True,
        }
        while True:
            page = self._t.query(**kwargs)
            items.extend(_plain(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
