"""The train's notifications at the fleet's largest size (2,000 services): each is a summary within SNS's 256 KB and
the webhook's 4,000 characters that says where the full list is, and the ledger keeps every service.

The real Ledger (moto table from template.yaml), the real Notifier (moto SNS delivering to SQS; the webhook a loopback
HTTP server, which the notifier accepts over plain http on 127.0.0.1 only)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from release_train.adapters.ledger import Ledger, ReleaseRecord
from release_train.adapters.notifier import SNS_MESSAGE_BYTES, WEBHOOK_TEXT_CHARS, Notifier
from release_train.domain.live import Live
from release_train.domain.release import ManifestEntry, Status
from release_train.services.context import NOTIFY_LINES, notify, summarised
from release_train.services.request_approval import ApprovalService
from tests.unit.adapters.ledger_table import ITEM_LIMIT, create_ledger_table, item_size
from tests.unit.adapters.loopback import Loopback, loopback_server
from tests.unit.large_fleet import github_fleet

MONDAY = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
RELEASE = "2026-W48"
EXEC = "arn:aws:states:us-east-1:123456789012:execution:ReleaseTrain-rt:a"
WEBHOOK_SECRET = "release-train/slack-webhook"
SERVICES = 2_000


@dataclass
class _Clock:
    def now(self) -> datetime:
        return MONDAY


class _NoExecutions:
    """RequestApproval only keeps the task token; it never calls Step Functions itself."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"RequestApproval called executions.{name}")


@dataclass
class Train:
    ledger: Ledger
    table: Any
    notifier: Notifier
    sqs: Any
    queue: str
    webhook: Loopback
    fleet: dict[str, Any]

    def published(self) -> list[dict[str, Any]]:
        """What SNS delivered (to an SQS subscriber): subject, message, attributes."""
        messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]

    def webhook_texts(self) -> list[str]:
        return [json.loads(r.body)["text"] for r in self.webhook.requests]


@dataclass
class Sent:
    """What one approval request sent, and what it left in the ledger."""

    published: dict[str, Any]
    webhook_texts: list[str]
    item: dict[str, Any]
    old_message: bytes


@pytest.fixture(scope="module")
def train() -> Iterator[Train]:
    """One planned release of 2,000 services for the whole module (planning it takes seconds)."""
    with pytest.MonkeyPatch.context() as env, mock_aws(), loopback_server() as webhook:
        env.setenv("NO_PROXY", "127.0.0.1")
        webhook.route("POST", "/hook", 200, {"ok": True})
        sns, sqs = boto3.client("sns", region_name="us-east-1"), boto3.client("sqs", region_name="us-east-1")
        topic = sns.create_topic(Name="release-train")["TopicArn"]
        queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        secrets = boto3.client("secretsmanager", region_name="us-east-1")
        secrets.create_secret(Name=WEBHOOK_SECRET, SecretString=webhook.base_url + "/hook")
        table = create_ledger_table()
        ledger = Ledger(table)
        fleet = github_fleet(SERVICES, webhook_secret=WEBHOOK_SECRET)
        _plan(ledger, fleet)
        yield Train(ledger, table, Notifier(sns, topic, secrets), sqs, queue, webhook, fleet)


@pytest.fixture(scope="module")
def approval(train: Train) -> Iterator[Sent]:
    """The prod approval requested once; what SNS and the webhook got, and the ledger's APPROVAL# item."""
    old = _old_approval_message(train)
    ApprovalService(train.ledger, _NoExecutions(), train.notifier, _Clock()).request(RELEASE, "prod", "token-1")
    [published] = train.published()
    [item] = [i for i in train.table.scan()["Items"] if i["SK"] == "APPROVAL#prod"]
    yield Sent(published, train.webhook_texts(), item, old)
    train.webhook.requests.clear()


def _plan(ledger: Ledger, fleet: dict[str, Any]) -> None:
    """What PlanRelease leaves: the release with its pinned fleet and every service in the manifest; prod was observed
    running half of them."""
    stages = [s["name"] for s in fleet["stages"]]
    record = ReleaseRecord(RELEASE, "acme", Status.RUNNING, "planned", EXEC, MONDAY.isoformat(), stages=stages)
    assert ledger.create_release(record, fleet)
    entries = [
        ManifestEntry(
            s["name"],
            hashlib.sha1(f"{s['name']} new".encode()).hexdigest(),  # commit ids as git makes them: 40 hex
            hashlib.sha1(f"{s['name']} old".encode()).hexdigest(),
            s["wave"],
            f"github:{s['source']['github']}@{s['source']['branch']}",
        )
        for s in fleet["services"]
    ]
    ledger.put_manifest(RELEASE, entries)
    ledger.set_live(
        "acme", [Live("prod", e.service, e.previous_commit or "", "2026-W47", "aliases") for e in entries[::2]]
    )


def _old_approval_message(train: Train) -> bytes:
    """The message the approval sent before it was summarised (at least: every service, in will_deploy and lines)."""
    live = train.ledger.live("acme").get("prod", {})
    rows: list[dict[str, Any]] = [
        {
            "service": e.service,
            "wave": e.wave,
            "from": live[e.service].commit if e.service in live else (e.previous_commit or "not deployed"),
            "to": e.commit,
            "source": e.source,
        }
        for e in sorted(train.ledger.manifest(RELEASE), key=lambda m: (m.wave, m.service))
    ]
    lines = [f"{d['service']}: {str(d['from'])[:12]} -> {d['to'][:12]} (wave {d['wave']})" for d in rows]
    return json.dumps({"kind": "approval", "will_deploy": rows, "lines": lines}, indent=2).encode()


def test_given_2000_services_when_prod_approval_is_requested_then_the_sns_message_is_a_summary_within_256_kb(
    approval: Sent,
) -> None:
    assert len(approval.old_message) > SNS_MESSAGE_BYTES  # what it replaced could not be published

    message = json.loads(approval.published["Message"])

    assert len(approval.published["Message"].encode()) < SNS_MESSAGE_BYTES and "truncated" not in message
    assert (message["kind"], message["stage"], message["release_id"], message["services"]) == (
        "approval",
        "prod",
        RELEASE,
        SERVICES,
    )
    assert len(message["will_deploy"]) == NOTIFY_LINES and len(message["lines"]) == NOTIFY_LINES + 1
    assert message["lines"][-1].startswith(f"... and {SERVICES - NOTIFY_LINES} more (all {SERVICES}: ")
    assert "SK=APPROVAL#prod" in message["full_detail"] and "SK=SVC#<service>" in message["full_detail"]
    assert message["approve"] == f"trainctl approve {RELEASE} --stage prod"


def test_given_2000_services_when_prod_approval_is_requested_then_the_webhook_text_is_within_its_cap(
    approval: Sent,
) -> None:
    [text] = approval.webhook_texts

    assert len(text) <= WEBHOOK_TEXT_CHARS
    assert text.startswith(f"*Approval needed before deploying to prod: release {RELEASE}*")
    assert "SK=APPROVAL#prod" in text.splitlines()[-1] and "more lines not shown" not in text


def test_given_2000_services_when_prod_approval_is_requested_then_the_ledger_keeps_every_service_within_an_item(
    train: Train, approval: Sent
) -> None:
    packet = json.loads(approval.item["packet"])
    manifest = {e.service: e for e in train.ledger.manifest(RELEASE)}
    live = train.ledger.live("acme")["prod"]

    assert item_size(approval.item) < ITEM_LIMIT
    assert packet["from"].keys() == manifest.keys()  # with the manifest (to, wave, source): every service in full
    assert all(packet["from"][s] == (live[s].commit if s in live else manifest[s].previous_commit) for s in manifest)


def test_given_2000_release_notes_when_a_release_ships_then_the_notification_lists_the_first_and_points_to_the_rest(
    train: Train,
) -> None:
    lines = [f"{s['name']}: {'a' * 12}..{'b' * 12} (wave {s['wave']})" for s in train.fleet["services"]]

    body = summarised({"kind": "succeeded", "release_id": RELEASE, "lines": lines})

    assert body["lines"][:NOTIFY_LINES] == lines[:NOTIFY_LINES]
    assert body["lines"][-1] == (
        f"... and {SERVICES - NOTIFY_LINES} more (all {SERVICES}: ledger items PK=RELEASE#{RELEASE}, SK=SVC#<service>)"
    )
    assert body["full_detail"] == f"ledger items PK=RELEASE#{RELEASE}, SK=SVC#<service>"


def test_given_a_reason_naming_every_service_when_notified_then_it_is_cut_and_sns_and_the_webhook_take_it(
    train: Train,
) -> None:
    # RecordFailure's reason ends with "prod runs new code for 2000 of 2000 services: <every name>".
    reason = "WaveFailed: boom. prod runs new code for 2000 of 2000 services: " + ", ".join(
        s["name"] for s in train.fleet["services"]
    )

    notify(
        train.notifier, None, f"Release {RELEASE} FAILED", {"kind": "failed", "release_id": RELEASE, "reason": reason}
    )

    [message] = [json.loads(p["Message"]) for p in train.published()]
    assert len(message["reason"]) < 400 and message["reason"].endswith("(cut; the ledger has it whole)")


def test_given_small_bodies_when_summarised_then_they_are_unchanged() -> None:
    body = {"kind": "succeeded", "release_id": RELEASE, "reason": "all stages promoted", "lines": ["api: a1..a2"]}

    assert summarised(body) == body
