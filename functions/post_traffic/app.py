"""PostTraffic hook (CodeDeploy AfterAllowTraffic): checks the new version once it takes all the traffic.

Deployed as CodeDeployHook_<stack>_PostTraffic: the AWS-managed CodeDeploy role for Lambda may only invoke functions
whose name starts with CodeDeployHook_ (see docs/hooks.md). No Tracer here: the X-Ray SDK costs ~160 ms of import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from release_train.domain.checks import HookPhase
from release_train.hook_lambda import hook_from_environment

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

PHASE = HookPhase.POST_TRAFFIC
logger, metrics, runtime = hook_from_environment(PHASE)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return runtime.handle(event, context)
