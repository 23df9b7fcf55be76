"""Tell people: SNS always; a Slack-compatible webhook when configured. A failed notification never fails a release.

A webhook URL is a secret (Slack's is `https://hooks.slack.com/services/T…/B…/<secret>`: the secret is the path), so
nothing here logs a URL, a path, a header or a secret value: a failure is logged with the webhook's host and the
error's type. requests' exception messages embed the URL ("404 Client Error: Not Found for url: https://…"), so they
are never logged, and urllib3's own log lines have their request paths redacted (below).

Every message is bounded here, whatever the caller built (services summarise; this is the hard stop): SNS gets at most
SNS_MESSAGE_BYTES with its attributes, a webhook at most WEBHOOK_TEXT_CHARS of text. What is cut is said in the
message itself.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import Any
from urllib.parse import urlsplit

import requests
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from botocore.exceptions import ClientError

logger = Logger(child=True)

# SNS Publish (https://docs.aws.amazon.com/sns/latest/api/API_Publish.html), Message: "messages must be UTF-8 encoded
# strings and at most 256 KB in size (262,144 bytes, not 262,144 characters)"; and MessageAttributeValue: "All parts
# of the message attribute, including name, type, and value, are included in the message size restriction".
SNS_MESSAGE_BYTES = 262_144
# Slack chat.postMessage, "Truncating content" (https://docs.slack.dev/reference/methods/chat.postMessage): "For best
# results, limit the number of characters in the text field to 4,000 characters. Slack will truncate messages
# containing more than 40,000 characters." Incoming webhooks take the same `text`; we keep to the 4,000.
WEBHOOK_TEXT_CHARS = 4_000
# Shrinking an oversized SNS body: lists and maps keep their first `entries`, strings their first `chars`, step by step
# until it fits; the last step keeps only what says which release it is.
_SHRINK_STEPS = ((200, 2_000), (100, 1_000), (50, 500), (20, 200), (5, 100), (0, 60))


class _RedactRequestPaths(logging.Filter):
    """urllib3 logs request paths: `"POST /services/T/B/<secret> HTTP/1.1" 200` at DEBUG (connectionpool), and
    "Retrying ... : /services/..." at WARNING. A logger's filters see only its own records, so this sits on each
    logger that logs a path; it keeps the record and replaces any argument that is a path or a URL by `<path>`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(arg) for arg in record.args)
        return True


def _redact(arg: object) -> object:
    if isinstance(arg, str) and (arg.startswith("/") or "://" in arg):
        return "<path>"
    return arg


for _name in ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.poolmanager"):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, _RedactRequestPaths) for f in _logger.filters):
        _logger.addFilter(_RedactRequestPaths())


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Notifier:
    """`secrets` is a Secrets Manager client; webhook URLs are read through Powertools Parameters and cached for
    `secret_max_age` seconds (one read per warm container, not one per notification)."""

    def __init__(
        self,
        sns: Any,
        topic_arn: str,
        secrets: Any | None = None,
        *,
        secret_max_age: int = 300,
        timeout: float = 5.0,
    ) -> None:
        self._sns = sns
        self._topic = topic_arn
        self._secrets = SecretsProvider(boto3_client=secrets) if secrets is not None else None
        self._secret_max_age = secret_max_age
        self._timeout = timeout
        self._session = requests.Session()

    def send(self, subject: str, body: dict[str, Any], webhook_secret: str | None = None) -> bool:
        ok = True
        subject = subject[:100]  # SNS rejects subjects over 100 characters
        kind = str(body.get("kind", "release"))[:100]
        # The attribute's name, type and value count against the same 256 KB; so does the subject here, to be safe.
        budget = SNS_MESSAGE_BYTES - sum(len(part.encode()) for part in ("kind", "String", kind, subject))
        try:
            self._sns.publish(
                TopicArn=self._topic,
                Subject=subject,
                Message=bounded_json(body, budget),
                MessageAttributes={"kind": {"DataType": "String", "StringValue": kind}},
            )
        except Exception:
            logger.exception("SNS notification failed", extra={"subject": subject})  # no secret in an SNS error
            ok = False
        if webhook_secret and self._secrets is not None:
            ok = self._webhook(self._secrets, webhook_secret, subject, body) and ok
        return ok

    def _webhook(self, secrets: SecretsProvider, secret_id: str, subject: str, body: dict[str, Any]) -> bool:
        url = self._webhook_url(secrets, secret_id, subject)
        if url is None:
            return False
        host = urlsplit(url).hostname or ""
        text = bounded_text(f"*{subject}*", [f"• {line}" for line in body.get("lines", [])])
        try:
            # No redirects: a 3xx could carry the message (and the path) to another host.
            response = self._session.post(url, json={"text": text}, timeout=self._timeout, allow_redirects=False)
        except Exception as exc:  # requests' messages hold the URL: log the type only
            logger.error(
                "webhook notification failed",
                extra={"subject": subject, "webhook_host": host, "error_type": type(exc).__name__},
            )
            return False
        with response:
            if 200 <= response.status_code < 300:
                return True
            logger.error(
                "webhook notification failed",
                extra={"subject": subject, "webhook_host": host, "status_code": response.status_code},
            )
        return False

    def _webhook_url(self, secrets: SecretsProvider, secret_id: str, subject: str) -> str | None:
        """The webhook's URL if the secret holds an https:// URL; otherwise log why (never its value) and None."""
        try:
            value = secrets.get(secret_id, max_age=self._secret_max_age)
        except Exception as exc:
            # Powertools raises GetParameterError(str(error)) inside its `except`: the SDK error is the context.
            cause = exc.__context__
            code = cause.response.get("Error", {}).get("Code") if isinstance(cause, ClientError) else None
            logger.error(
                "webhook secret unreadable",
                extra={"subject": subject, "webhook_secret": secret_id, "error_type": code or type(exc).__name__},
            )
            return None
        url = value.strip() if isinstance(value, str) else ""
        try:
            parts = urlsplit(url)
            host = parts.hostname if parts.scheme in ("http", "https") and "://" in url else None
        except ValueError:  # e.g. an unbalanced '[' in the host
            host = None
        if not host:
            # Not a URL at all (a token stored under the webhook's name?): say so, and nothing of what it holds.
            logger.error("webhook secret is not a URL; nothing sent", extra={"webhook_secret": secret_id})
            return None
        # https only; plain http is accepted on loopback alone (local emulators: nothing leaves the machine).
        if parts.scheme != "https" and not _loopback(host):
            logger.error(
                "webhook refused: not an https:// URL; nothing sent",
                extra={"webhook_secret": secret_id, "webhook_host": host, "webhook_scheme": parts.scheme},
            )
            return None
        return url


def _dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, indent=2, default=str)


def bounded_json(body: dict[str, Any], limit: int = SNS_MESSAGE_BYTES) -> str:
    """`body` as indented JSON of at most `limit` UTF-8 bytes, and still one JSON document: over the limit, nested lists
    and maps keep their first entries and strings their start, each saying how much is not shown, and `truncated`
    says why."""
    message = _dumps(body)
    if len(message.encode()) <= limit:
        return message
    note = f"shortened to fit {limit:,} bytes (SNS messages are limited to 256 KB): lists and texts are cut"
    for entries, chars in _SHRINK_STEPS:
        shrunk = {"truncated": note, **{k: _shrink(v, entries, chars) for k, v in body.items() if k != "truncated"}}
        message = _dumps(shrunk)
        if len(message.encode()) <= limit:
            return message
    # Only a body with very many top-level keys gets here: say which release it is about, and that it was cut.
    return _dumps(
        {"kind": str(body.get("kind", ""))[:60], "release_id": str(body.get("release_id", ""))[:200], "truncated": note}
    )


def _shrink(value: Any, entries: int, chars: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= chars else f"{value[:chars]}... ({len(value) - chars:,} more characters)"
    if isinstance(value, dict):
        kept = {str(k): _shrink(v, entries, chars) for k, v in list(value.items())[:entries]}
        if len(value) > entries:
            kept["..."] = f"{len(value) - entries:,} more entries not shown"
        return kept
    if isinstance(value, list | tuple):
        items = [_shrink(v, entries, chars) for v in value[:entries]]
        return [*items, f"... {len(value) - entries:,} more not shown"] if len(value) > entries else items
    return value


def bounded_text(title: str, lines: list[str], limit: int = WEBHOOK_TEXT_CHARS) -> str:
    """`title` and as many whole `lines` as fit in `limit` characters; a last line counts what was left out."""
    text = "\n".join([title, *lines])
    if len(text) <= limit:
        return text
    kept = [_clip(title, limit // 2)]
    used = len(kept[0])
    for n, line in enumerate(_clip(line, limit // 8) for line in lines):
        marker = f"… {len(lines) - n:,} more lines not shown (a chat message is kept to {limit:,} characters)"
        if used + len(line) + len(marker) + 2 > limit:
            return "\n".join([*kept, marker])
        kept.append(line)
        used += len(line) + 1
    return "\n".join(kept)  # only the title was too long


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"
