"""EvaluateGate: collect the stage's evidence, decide PROMOTE or BLOCK (fail closed), raise GateBlocked."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from release_train.events import EvaluateGateEvent, parse_event
from release_train.wiring import gate_service

logger = Logger()
service = gate_service()


@logger.inject_lambda_context(clear_state=True)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    request = parse_event(EvaluateGateEvent, event)
    logger.append_keys(release_id=request.release_id, stage=request.stage.name)
    return service.evaluate(request.model_dump(by_alias=True))
