"""AnswerApproval: the approval front door, behind a function URL with AWS_IAM auth.

Lambda puts the signed-in caller in the event (function URL payload format 2.0,
`requestContext.authorizer.iam.userArn`: "Invoking Lambda function URLs", request payload). Nobody can type another
identity: a caller would need `lambda:InvokeFunction` without the `lambda:InvokedViaFunctionUrl` condition to invoke
the function directly with a forged event, and the stack's ApproverPolicy grants it only with that condition
(docs/guardrails.md). `trainctl approve|reject` signs the request with SigV4.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from release_train.domain.errors import InvalidInput, NoSuchApproval, NotAnApprover
from release_train.domain.fleet import NAME
from release_train.function_url import Refused, response, signed_request
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


@logger.inject_lambda_context(clear_state=True)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    try:
        caller, answer = signed_request(event, Answer, "ApprovalsUrl")
    except Refused as refused:
        return response(refused.status, refused.body)
    logger.append_keys(release_id=answer.release_id, stage=answer.stage, caller=caller)
    try:
        record = service.answer(
            caller, answer.release_id, answer.stage, answer.decision == "approve", answer.reason, answer.by
        )
    except NotAnApprover as exc:
        logger.warning("answer refused: not an approver")
        return response(403, {"error": str(exc)})
    except NoSuchApproval as exc:
        return response(404, {"error": str(exc)})
    except InvalidInput as exc:  # already decided, or Step Functions no longer waits
        return response(409, {"error": str(exc), "problems": exc.problems})
    logger.info("approval answered", extra={"status": record.status})
    return response(
        200,
        {
            "release_id": answer.release_id,
            "stage": record.stage,
            "status": record.status,
            "decided_by": record.decided_by,
            "identity": record.identity,
        },
    )
