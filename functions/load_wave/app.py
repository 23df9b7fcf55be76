"""LoadWave: whether a wave may start and in how many chunks; for a BuildChunk execution, one chunk's builds."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from release_train.events import LoadWaveEvent, parse_event
from release_train.wiring import load_wave_service

logger = Logger()
service = load_wave_service()


@logger.inject_lambda_context(clear_state=True)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    request = parse_event(LoadWaveEvent, event)
    logger.append_keys(release_id=request.release_id, stage=request.stage, wave=request.wave, chunk=request.chunk)
    if request.chunk is not None:
        return service.load_chunk(request.release_id, request.stage, request.wave, request.chunk)
    return service.load(request.release_id, request.stage, request.wave)
