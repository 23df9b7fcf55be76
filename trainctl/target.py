"""Where operator commands act: the deployed stack, found by name (its outputs and parameters via CloudFormation), and
the approval front door, called over HTTPS with the operator's own SigV4-signed identity."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

DEFAULT_STACK = "release-train"


class TargetError(Exception):
    """The stack or its front door could not be reached or read: an AWS, credentials or not-found problem (exit 3)."""


def default_stack_name(root: Path) -> str:
    """samconfig.toml's `stack_name` (the stack `sam deploy` made), else release-train."""
    try:
        config = tomllib.loads((root / "samconfig.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return DEFAULT_STACK
    name = config.get("default", {}).get("global", {}).get("parameters", {}).get("stack_name")
    return str(name) if name else DEFAULT_STACK


@dataclass(frozen=True)
class Stack:
    name: str
    account: str
    region: str
    outputs: dict[str, str]
    parameters: dict[str, str]

    def output(self, key: str) -> str:
        if key not in self.outputs:
            raise TargetError(f"stack {self.name} has no output {key}: is it a release-train stack, and up to date?")
        return self.outputs[key]


def describe_stack(cloudformation: Any, name: str) -> Stack:
    """DescribeStacks: outputs (OutputKey/OutputValue) and parameters (ParameterKey/ParameterValue); the account and
    region come from the StackId ARN."""
    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except Exception as exc:  # botocore ClientError (ValidationError: does not exist), credentials, endpoint
        raise TargetError(f"cannot read stack {name}: {type(exc).__name__}: {exc}") from exc
    stack = stacks[0]
    arn = stack["StackId"].split(":")
    return Stack(
        name=name,
        account=arn[4],
        region=arn[3],
        outputs={o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
        parameters={
            p["ParameterKey"]: p.get("ResolvedValue", p.get("ParameterValue", "")) for p in stack.get("Parameters", [])
        },
    )


@dataclass(frozen=True)
class Answered:
    status: int  # the function URL's HTTP status
    body: dict[str, Any]


class Approvals:
    """POST an answer to the AnswerApproval function URL, SigV4-signed for service `lambda` ("Invoking Lambda function
    URLs": AWS_IAM auth needs a SigV4 signature), so the function sees who answered as AWS authenticated them."""

    def __init__(self, url: str, credentials: Any, region: str, http: requests.Session | None = None) -> None:
        self._url, self._credentials, self._region = url, credentials, region
        self._http = http or requests.Session()

    @staticmethod
    def region_of(url: str, fallback: str) -> str:
        # https://<url-id>.lambda-url.<region>.on.aws/
        host = urlsplit(url).hostname or ""
        parts = host.split(".")
        return parts[2] if len(parts) > 3 and parts[1] == "lambda-url" else fallback

    def answer(self, release_id: str, stage: str, approve: bool, reason: str, by: str = "") -> Answered:
        body = json.dumps(
            {
                "release_id": release_id,
                "stage": stage,
                "decision": "approve" if approve else "reject",
                "reason": reason,
                "by": by,
            }
        )
        request = AWSRequest(method="POST", url=self._url, data=body, headers={"Content-Type": "application/json"})
        SigV4Auth(self._credentials, "lambda", self._region).add_auth(request)
        try:
            response = self._http.post(self._url, data=body, headers=dict(request.headers.items()), timeout=30)
        except requests.RequestException as exc:
            host = urlsplit(self._url).hostname
            raise TargetError(f"cannot reach the approvals URL ({host}): {type(exc).__name__}") from None
        try:
            parsed = response.json()
        except ValueError:
            parsed = {"error": response.text[:500]}
        return Answered(response.status_code, parsed if isinstance(parsed, dict) else {"error": str(parsed)})
