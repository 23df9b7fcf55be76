"""The company.created webhook: after a company is stored, its JSON is POSTed to the stage's subscriber, signed with
HMAC-SHA256 over the exact body (header `X-Company-Signature: sha256=<hex>`, the scheme GitHub's webhooks use), so
the subscriber can tell the call came from this service.

Where the secret lives: Secrets Manager, one secret per stage in that stage's account, JSON
`{"url": "https://...", "signing_key": "..."}` (a subscriber URL often carries a token of its own, so it is kept with
the key). The function's environment holds the secret's *name* only (`WEBHOOK_SECRET_NAME`, from the template's
`WebhookSecretName` parameter, set per config-env in samconfig.toml); its IAM policy may read that one secret. The
value is fetched at run time through Powertools (cached per container for `CACHE_SECONDS`) and is never logged,
returned, or put in an error message: what the handler logs about a delivery names the subscriber's host only.

Only a create reads the secret, and only after the request is valid: the other verbs, and the traffic hooks' checks
(invalid bodies, missing ids), never touch it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError

SECRET_NAME_VARIABLE = "WEBHOOK_SECRET_NAME"
SIGNATURE_HEADER = "X-Company-Signature"
EVENT_HEADER = "X-Company-Event"
CACHE_SECONDS = 300  # a rotated secret reaches every warm container within 5 minutes
TIMEOUT_SECONDS = 3  # well inside the function's 10 s
MIN_KEY_LENGTH = 32  # HMAC-SHA256: a key shorter than the hash's 32 bytes weakens it (RFC 2104, section 3)

# urllib.request.urlopen, replaceable in tests (the function has no HTTP library beyond the standard one).
_send: Any = urllib.request.urlopen


class WebhookNotConfigured(RuntimeError):
    """This stage's webhook secret cannot be used (unset, missing, unreadable, or not the expected JSON).

    Raised before the company is written: a stage without its secret stores nothing, and in a canary the function's
    Errors alarm rolls the version back. The message names the secret and the fix, never its value."""


@dataclass(frozen=True)
class Subscriber:
    url: str = field(repr=False)
    signing_key: bytes = field(repr=False)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    def sign(self, body: bytes) -> str:
        return "sha256=" + hmac.new(self.signing_key, body, hashlib.sha256).hexdigest()


def subscriber() -> Subscriber:
    """The stage's subscriber, from its secret."""
    name = os.environ.get(SECRET_NAME_VARIABLE, "")
    if not name:
        raise WebhookNotConfigured(
            f"{SECRET_NAME_VARIABLE} is not set: deploy with the template, which sets it from WebhookSecretName"
        )
    fix = f'store it in this stage\'s account as {{"url": "https://...", "signing_key": "<{MIN_KEY_LENGTH}+ chars>"}}'
    try:
        value = parameters.get_secret(name, transform="json", max_age=CACHE_SECONDS)
    except TransformParameterError:
        # Powertools wraps the JSON error; neither message holds the value, but none is passed on anyway.
        raise WebhookNotConfigured(f"secret {name!r} is not JSON: {fix}") from None
    except GetParameterError as exc:
        # The SDK's message (e.g. ResourceNotFoundException: "Secrets Manager can't find the specified secret.").
        raise WebhookNotConfigured(f"cannot read secret {name!r} ({exc}): {fix}") from None
    url = value.get("url") if isinstance(value, dict) else None
    key = value.get("signing_key") if isinstance(value, dict) else None
    if not isinstance(url, str) or not url.startswith("https://") or not urlsplit(url).hostname:
        raise WebhookNotConfigured(f"secret {name!r}: field url must be an https:// URL; {fix}")
    if not isinstance(key, str) or len(key) < MIN_KEY_LENGTH:
        raise WebhookNotConfigured(f"secret {name!r}: field signing_key must be a string of {MIN_KEY_LENGTH}+ chars")
    return Subscriber(url=url, signing_key=key.encode())


@dataclass(frozen=True)
class Delivery:
    """What the handler logs about a delivery: the subscriber's host and the outcome, nothing from the secret."""

    webhook_host: str
    event_type: str
    status: int | None = None  # the subscriber's HTTP status, when it answered
    error: str | None = None  # the exception's class when it did not (URLError, TimeoutError, ...)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def deliver(to: Subscriber, event_type: str, data: dict[str, Any]) -> Delivery:
    """POST one signed event to the subscriber.

    At most once and best effort: the company is already stored, so the caller logs a failed delivery and the create
    still succeeds. A service that must never miss an event would write it to a queue instead."""
    body = json.dumps({"type": event_type, "data": data}, separators=(",", ":"), sort_keys=True).encode()
    request = urllib.request.Request(
        to.url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", EVENT_HEADER: event_type, SIGNATURE_HEADER: to.sign(body)},
    )
    try:
        with _send(request, timeout=TIMEOUT_SECONDS) as response:
            return Delivery(to.host, event_type, status=int(response.status))
    except urllib.error.HTTPError as exc:  # a non-2xx answer; its body is the subscriber's, not kept
        exc.close()
        return Delivery(to.host, event_type, status=exc.code)
    except OSError as exc:  # URLError (DNS, refused, TLS), TimeoutError: its class only, its text may hold the URL
        return Delivery(to.host, event_type, error=type(exc).__name__)
