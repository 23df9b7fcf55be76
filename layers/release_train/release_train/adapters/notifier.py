"""Tell people: SNS always; a Slack-compatible webhook when configured. A failed notification never fails a release."""

from __future__ import annotations

import json
from typing import Any

import requests
from aws_lambda_powertools import Logger

logger = Logger(child=True)


class Notifier:
    def __init__(self, sns: Any, topic_arn: str, secrets: Any | None = None) -> None:
        self._sns = sns
        self._topic = topic_arn
        self._secrets = secrets
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
            logger.exception("SNS notification failed", extra={"subject": subject})
            ok = False
        if webhook_secret and self._secrets is not None:
            ok = self._webhook(self._secrets, webhook_secret, subject, body) and ok
        return ok

    def _webhook(self, secrets: Any, secret_id: str, subject: str, body: dict[str, Any]) -> bool:
        try:
            url = secrets.get_secret_value(SecretId=secret_id)["SecretString"].strip()
            lines = [f"*{subject}*"] + [f"• {line}" for line in body.get("lines", [])]
            response = self._session.post(url, json={"text": "\n".join(lines)}, timeout=5)
            response.raise_for_status()
        except Exception:
            logger.exception("webhook notification failed", extra={"subject": subject})
            return False
        return True
