"""AnswerApproval: the approval front door, behind a function URL with AWS_IAM auth.

Lambda puts the signed-in caller in the event (function URL payload format 2.0,
`requestContext.authorizer.iam.userArn`: "Invoking Lambda function URLs", request payload). Nobody can type another
identity: a caller would need `lambda:InvokeFunction` without the `lambda:InvokedViaFunctionUrl` condition to invoke
the function directly with a forged event, and the stack's ApproverPolicy grants it only with that condition
(docs/guardrails.md). `trainctl approve|reject` signs the request with SigV4.
"""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from release_train.domain.errors import InvalidInput, NoSuchApproval, NotAnApprover
from release_train.domain.fleet import NAME, format_validation_error
from release_train.wiring import answer_approval_service

logger = Logger()
service = answer_approval_service()


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    release_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    stage: Annotated[str, Field(pattern=NAME)]
    decision: Literal["approve", "reject"]
    reason: Annotated[str, Field(min_length=1, max_length=1000)]
    by: Annotated[str, Field(max_length=200)] = ""


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def _caller(event: dict[str, Any]) -> str | None:
    iam = ((event.get("requestContext") or {}).get("authorizer") or {}).get("iam") or {}
    arn = iam.get("userArn")
    return arn if isinstance(arn, str) and arn.startswith("arn:") else None


@logger.inject_lambda_context(clear_state=True)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    if not isinstance(event, dict) or "requestContext" not in event:
        return _response(400, {"error": "not a function URL request; call the ApprovalsUrl stack output"})
    caller = _caller(event)
    if caller is None:  # only when the URL's AuthType is not AWS_IAM: refuse rather than trust anything
        return _response(403, {"error": "no IAM identity on the request: the function URL must use AuthType AWS_IAM"})
    if (event["requestContext"].get("http") or {}).get("method") != "POST":
        return _response(405, {"error": "POST a JSON answer"})
    raw = event.get("body") or ""
    try:
        text = base64.b64decode(raw).decode() if event.get("isBase64Encoded") else raw
        answer = Answer.model_validate(json.loads(text))
    except ValidationError as exc:
        return _response(400, {"error": "answer is invalid", "problems": format_validation_error(exc)})
    except (ValueError, UnicodeDecodeError):
        return _response(400, {"error": "the body is not JSON", "problems": ["<body>: expected a JSON object"]})
    logger.append_keys(release_id=answer.release_id, stage=answer.stage, caller=caller)
    try:
        record = service.answer(
            caller, answer.release_id, answer.stage, answer.decision == "approve", answer.reason, answer.by
        )
    except NotAnApprover as exc:
        logger.warning("answer refused: not an approver")
        return _response(403, {"error": str(exc)})
    except NoSuchApproval as exc:
        return _response(404, {"error": str(exc)})
    except InvalidInput as exc:  # already decided, or Step Functions no longer waits
        return _response(409, {"error": str(exc), "problems": exc.problems})
    logger.info("approval answered", extra={"status": record.status})
    return _response(
        200,
        {
            "release_id": answer.release_id,
            "stage": record.stage,
            "status": record.status,
            "decided_by": record.decided_by,
            "identity": record.identity,
        },
    )
