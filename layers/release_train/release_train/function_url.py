"""The train's front doors behind Lambda function URLs with AuthType AWS_IAM (AnswerApproval, BreakGlass).

Lambda authenticates the SigV4-signed request and puts the caller in the event (payload format 2.0,
`requestContext.authorizer.iam.userArn`: "Invoking Lambda function URLs", request payload); nobody types it. A
caller could forge that block only by invoking the function directly, which the stack's caller policies allow only
with `lambda:InvokedViaFunctionUrl` = true (docs/guardrails.md).
"""

from __future__ import annotations

import base64
import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from release_train.domain.fleet import format_validation_error

M = TypeVar("M", bound=BaseModel)


class Refused(Exception):
    """A request answered with an HTTP error before anything was done."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error", ""))
        self.status, self.body = status, body


def response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def signed_request(event: Any, model: type[M], output_name: str) -> tuple[str, M]:
    """The authenticated caller's ARN and the validated JSON body, or Refused (400/403/405) saying what to fix."""
    if not isinstance(event, dict) or "requestContext" not in event:
        raise Refused(400, {"error": f"not a function URL request; call the {output_name} stack output"})
    iam = ((event["requestContext"].get("authorizer") or {}).get("iam")) or {}
    caller = iam.get("userArn")
    if not (isinstance(caller, str) and caller.startswith("arn:")):
        # only when the URL's AuthType is not AWS_IAM: refuse rather than trust anything
        raise Refused(403, {"error": "no IAM identity on the request: the function URL must use AuthType AWS_IAM"})
    if (event["requestContext"].get("http") or {}).get("method") != "POST":
        raise Refused(405, {"error": "POST a JSON body"})
    raw = event.get("body") or ""
    try:
        text = base64.b64decode(raw).decode() if event.get("isBase64Encoded") else raw
        return caller, model.model_validate(json.loads(text))
    except ValidationError as exc:
        raise Refused(400, {"error": "the request is invalid", "problems": format_validation_error(exc)}) from None
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, {"error": "the body is not JSON", "problems": ["<body>: expected a JSON object"]}) from None
