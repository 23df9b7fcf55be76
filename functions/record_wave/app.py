"""RecordWave: write the wave's build results to the ledger; raise WaveFailed if any build failed."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from release_train.events import RecordWaveEvent, parse_event
from release_train.wiring import record_wave_service

logger = Logger()
service = record_wave_service()


@logger.inject_lambda_context(clear_state=True)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    request = parse_event(RecordWaveEvent, event)
    logger.append_keys(release_id=request.release_id, stage=request.stage, wave=request.wave)
    results = [r.model_dump() for r in request.results]
    return service.record(request.release_id, request.stage, request.wave, results)
