"""CodeDeploy deployments a release left running: find the ones that shift the release's functions, stop them with
rollback, and wait (bounded) until CodeDeploy says they ended.

A build stopped by Step Functions does not stop the CloudFormation update or the CodeDeploy deployment it started
(the clean-up must). ListDeployments without an application lists the account's deployments (CodeDeploy API
reference, ListDeployments: applicationName and deploymentGroupName go together or not at all); each candidate's
AppSpec is read as the hooks read it (GetDeployment, then GetApplicationRevision: GetDeployment's content is always
null).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from release_train.adapters.aws import error_code
from release_train.domain.fleet import ecs_deployment_key
from release_train.domain.hook_targets import (
    LambdaTarget,
    appspec_content,
    appspec_revision_to_fetch,
    target_from_deployment,
)

# GetDeployment / GetApplicationRevision errors (API reference) that mean "someone else's, or gone".
_NOT_OURS = {
    "AccessDeniedException",
    "DeploymentDoesNotExistException",
    "ApplicationDoesNotExistException",
    "RevisionDoesNotExistException",
}
IN_FLIGHT = ["Created", "Queued", "InProgress", "Baking", "Ready"]
ENDED = {"Succeeded", "Failed", "Stopped"}


class Deployments:
    def __init__(self, client: Any, sleep: Callable[[float], None] | None = None) -> None:
        self._c = client
        self._sleep = sleep or time.sleep

    def in_flight(self, functions: Iterable[str], since: datetime) -> dict[str, str]:
        """deployment id -> function, for the account's running Lambda deployments of these functions (and ECS
        deployments named by `ecs_deployment_key`)."""
        wanted = set(functions)
        found: dict[str, str] = {}
        kwargs: dict[str, Any] = {"includeOnlyStatuses": IN_FLIGHT, "createTimeRange": {"start": since}}
        while True:
            page = self._c.list_deployments(**kwargs)
            for deployment_id in page.get("deployments", []):
                function = self._function_of(deployment_id)
                if function in wanted:
                    found[deployment_id] = function
            if not page.get("nextToken"):
                return found
            kwargs["nextToken"] = page["nextToken"]

    def _function_of(self, deployment_id: str) -> str | None:
        # ListDeployments names every team's deployments; the role may read only the fleet's (FleetNamePrefix, ADR
        # 0005), so AccessDenied on another application's deployment means "not ours", never a failed clean-up.
        try:
            info = self._c.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
            if info.get("computePlatform") == "ECS":
                # An ECS deployment is the release's when its application and group are (no AppSpec needed).
                return ecs_deployment_key(str(info.get("applicationName")), str(info.get("deploymentGroupName")))
            if info.get("computePlatform") != "Lambda":
                return None
            fetch = appspec_revision_to_fetch(info)
            content = None
            if fetch is not None:
                answer = self._c.get_application_revision(
                    applicationName=fetch.application_name, revision=fetch.revision
                )
                content = appspec_content(answer["revision"])
        except ClientError as exc:
            if error_code(exc) in _NOT_OURS:
                return None
            raise
        try:
            target = target_from_deployment(info, content)
        except Exception:
            return None  # not an AppSpec the train can read: not one of ours
        return target.function_name if isinstance(target, LambdaTarget) else None

    def stop(self, deployment_id: str) -> str:
        """StopDeployment with rollback; the deployment's status afterwards ('Pending' while CodeDeploy works)."""
        try:
            return str(self._c.stop_deployment(deploymentId=deployment_id, autoRollbackEnabled=True)["status"])
        except Exception as exc:
            if error_code(exc) == "DeploymentAlreadyCompletedException":
                return "AlreadyCompleted"
            raise

    def wait_ended(self, deployment_ids: Iterable[str], budget_s: float = 120.0) -> dict[str, str]:
        """Poll until each deployment ended (or the budget is spent): id -> last status seen."""
        pending = set(deployment_ids)
        statuses: dict[str, str] = {}
        delay, spent = 1.0, 0.0
        while pending:
            for deployment_id in sorted(pending):
                statuses[deployment_id] = str(
                    self._c.get_deployment(deploymentId=deployment_id)["deploymentInfo"]["status"]
                )
            pending = {d for d in pending if statuses[d] not in ENDED}
            if not pending or spent >= budget_s:
                return statuses
            self._sleep(delay)
            spent += delay
            delay = min(delay * 2, 15.0)
        return statuses
