"""Tell people: SNS always; a Slack-compatible webhook when configured. A failed notification never fails a release.

A webhook URL is a secret (Slack's is `https://hooks.slack.com/services/T…/B…/<secret>`: the secret is the path), so
nothing here logs a URL, a path, a header or a secret value: a failure is logged with the webhook's host and the
error's type. requests' exception messages embed the URL ("404 Client Error: Not Found for url: https://…"), so they
are never logged, and urllib3's own log lines have their request paths redacted (below).
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
        try:
            self._sns.publish(
                TopicArn=self._topic,
                Subject=subject[:100],  # SNS rejects subjects over 100 characters
                Message=json.dumps(body, indent=2, default=str),
                MessageAttributes={"kind": {"DataType": "String", "StringValue": str(body.get("kind", "release"))}},
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
        lines = [f"*{subject}*"] + [f"• {line}" for line in body.get("lines", [])]
        try:
            # No redirects: a 3xx could carry the message (and the path) to another host.
            response = self._session.post(
                url, json={"text": "\n".join(lines)}, timeout=self._timeout, allow_redirects=False
            )
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
