"""PostTraffic hook (CodeDeploy AfterAllowTraffic): checks the new version once it takes all the traffic.

Deployed as CodeDeployHook_<stack>_PostTraffic: the AWS-managed CodeDeploy role for Lambda may only invoke functions
whose name starts with CodeDeployHook_ (see docs/hooks.md). No Tracer here: the X-Ray SDK costs ~160 ms of import.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics

from release_train.adapters.check_runners import ExpressExecutor, HttpRequester, LambdaInvoker
from release_train.adapters.checks_store import SsmChecksSource
from release_train.adapters.codedeploy import CodeDeployDeployments, CodeDeployStatusReporter
from release_train.domain.checks import HookPhase
from release_train.hook_lambda import METRICS_NAMESPACE, HookRuntime, HookSettings
from release_train.hooks import TrafficHookService

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

PHASE = HookPhase.POST_TRAFFIC
SETTINGS = HookSettings(
    phase=PHASE,
    idempotency_table=os.environ.get("IDEMPOTENCY_TABLE"),
    safety_margin_ms=int(os.environ.get("HOOK_SAFETY_MARGIN_MS", "10000")),
    idempotency_ttl_s=int(os.environ.get("HOOK_IDEMPOTENCY_TTL_SECONDS", "86400")),
)
CHECKS_PREFIX = os.environ.get("CHECKS_PARAMETER_PREFIX", "/release-train/checks")

logger = Logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE))


def build_service(log: Logger) -> TrafficHookService:
    # Clients are built on first use (adapters.hook_clients): cheap import, and created after any sandbox mock.
    return TrafficHookService(
        deployments=CodeDeployDeployments(),
        reporter=CodeDeployStatusReporter(),
        checks=SsmChecksSource(prefix=CHECKS_PREFIX),
        invoker=LambdaInvoker(),
        http=HttpRequester(),
        express=ExpressExecutor(),
        log=log,
    )


runtime = HookRuntime(SETTINGS, logger, metrics, build_service)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return runtime.handle(event, context)
