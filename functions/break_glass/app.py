"""BreakGlass: start one train with the bake skipped, audited, behind a function URL with AWS_IAM auth.

The stack creates this function only when AllowBreakGlass is true; calling its URL needs the BreakGlassPolicy output
(its own permission, apart from approving and operating). The caller's identity comes from Lambda's authentication
(`requestContext.authorizer.iam.userArn`), never from the body. `trainctl start --skip-bake` signs the request.
"""

# No `from __future__ import annotations`: the model's annotations are evaluated here, where `Literal` is defined
# (pydantic cannot resolve them later when the module is loaded from a file path, as the tests do).
from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from release_train.adapters.aws import error_code
from release_train.domain.break_glass import Override
from release_train.domain.errors import InvalidInput
from release_train.domain.fleet import NAME
from release_train.function_url import Refused, response, signed_request
from release_train.wiring import break_glass_service

logger = Logger()
service = break_glass_service()


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["start"]
    skip: Annotated[tuple[Override, ...], Field(min_length=1, max_length=1)]
    reason: Annotated[str, Field(min_length=10, max_length=1000)]
    services: (
        Annotated[tuple[Annotated[str, Field(pattern=NAME)], ...], Field(min_length=1, max_length=2000)]
        | Literal["changed", "all"]
    ) = "changed"
    release_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")] | None = None


@logger.inject_lambda_context(clear_state=True)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    try:
        caller, request = signed_request(event, Request, "BreakGlassUrl")
    except Refused as refused:
        return response(refused.status, refused.body)
    logger.append_keys(caller=caller, skip=list(request.skip))
    try:
        started = service.start(caller, request.reason, request.skip, request.services, request.release_id)
    except InvalidInput as exc:
        return response(400, {"error": str(exc), "problems": exc.problems})
    except Exception as exc:  # e.g. ExecutionAlreadyExists, AccessDenied: say what, never a secret
        logger.exception("break glass failed")
        return response(502, {"error": f"the train did not start: {error_code(exc) or type(exc).__name__}"})
    logger.warning("break glass used: a train starts with a guardrail overridden")
    return response(200, started)
