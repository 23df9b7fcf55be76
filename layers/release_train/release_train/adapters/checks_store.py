"""Declared checks in SSM Parameter Store: one JSON String parameter per target, published by the service's stack.

Name: <prefix>/<checks key>, e.g. /release-train/checks/company-svc-prod-create (Lambda: the function name) or
/release-train/checks/ecs/<application>/<deployment group> (ECS).
"""

from __future__ import annotations

from release_train.adapters.hook_clients import LazyClient, error_code
from release_train.domain.hook_targets import CHECKS_PREFIX
from release_train.hooks import RawChecks


class SsmChecksSource:
    def __init__(self, prefix: str = CHECKS_PREFIX, ssm: LazyClient | None = None) -> None:
        self._prefix = prefix.rstrip("/")
        self._ssm = ssm or LazyClient("ssm")

    def parameter_name(self, checks_key: str) -> str:
        return f"{self._prefix}/{checks_key}"

    def load(self, checks_key: str) -> RawChecks | None:
        name = self.parameter_name(checks_key)
        try:
            parameter = self._ssm.get().get_parameter(Name=name, WithDecryption=True)["Parameter"]
        except Exception as exc:
            if error_code(exc) == "ParameterNotFound":
                return None
            raise
        return RawChecks(source=f"ssm:{name}", text=str(parameter["Value"]))
