"""Lambda aliases: what version a declared function's alias points to, which commit a version was built from, and
pointing an alias back (a rollback). The train's only window on what a Lambda service runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from release_train.adapters.aws import error_code
from release_train.domain.live import commit_in


@dataclass(frozen=True)
class AliasNow:
    """GetAlias's answer (AliasConfiguration): the version, the extra weighted versions of a traffic shift, and the
    RevisionId an UpdateAlias can be made conditional on."""

    version: str
    weights: dict[str, float]
    revision_id: str | None

    def label(self) -> str:
        shifted = ", ".join(f"{v} at {w:.0%}" for v, w in sorted(self.weights.items()))
        return f"{self.version} (+ {shifted})" if shifted else self.version


class Functions:
    def __init__(self, client: Any) -> None:
        self._c = client

    def alias_version(self, function: str, alias: str) -> str | None:
        """The version the alias points to; None when the function or alias does not exist (yet)."""
        now = self.alias_now(function, alias)
        return now.version if now else None

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
        self.point_if(function, alias, version, None)

    def alias_now(self, function: str, alias: str) -> AliasNow | None:
        """GetAlias: the version, a traffic shift's weights and the RevisionId; None when the function or alias does
        not exist (yet)."""
        try:
            answer = self._c.get_alias(FunctionName=function, Name=alias)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        weights = (answer.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        return AliasNow(str(answer["FunctionVersion"]), {str(k): float(v) for k, v in weights.items()},
                        answer.get("RevisionId"))  # fmt: skip

    def point_if(self, function: str, alias: str, version: str, revision_id: str | None) -> None:
        """All traffic of the alias to `version`. With `revision_id`, Lambda refuses it (PreconditionFailedException)
        when the alias changed since that was read ("The RevisionId provided does not match the latest RevisionId",
        UpdateAlias API reference)."""
        conditional = {"RevisionId": revision_id} if revision_id else {}
        self._c.update_alias(
            FunctionName=function,
            Name=alias,
            FunctionVersion=version,
            RoutingConfig={"AdditionalVersionWeights": {}},  # ends a half-shifted canary
            **conditional,
        )
