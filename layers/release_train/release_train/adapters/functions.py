"""Lambda aliases: what version a declared function's alias points to, which commit a version was built from, and
pointing an alias back (a rollback). The train's only window on what a Lambda service runs."""

from __future__ import annotations

from typing import Any

from release_train.adapters.aws import error_code
from release_train.domain.live import commit_in


class Functions:
    def __init__(self, client: Any) -> None:
        self._c = client

    def alias_version(self, function: str, alias: str) -> str | None:
        """The version the alias points to; None when the function or alias does not exist (yet)."""
        try:
            answer = self._c.get_alias(FunctionName=function, Name=alias)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        return str(answer["FunctionVersion"])

    def commit_of(self, function: str, version: str) -> str | None:
        """The commit named in the version's description (SAM VersionDescription set by the buildspec), if any."""
        try:
            config = self._c.get_function_configuration(FunctionName=function, Qualifier=version)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        return commit_in(config.get("Description"))

    def point(self, function: str, alias: str, version: str) -> None:
        """All traffic of the alias to `version` (an empty routing config ends any weighted shift)."""
        self._c.update_alias(
            FunctionName=function, Name=alias, FunctionVersion=version, RoutingConfig={"AdditionalVersionWeights": {}}
        )
