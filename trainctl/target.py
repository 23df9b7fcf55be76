"""Where operator commands act: the deployed stack, found by name (its outputs and parameters via CloudFormation), and
the approval front door, called over HTTPS with the operator's own SigV4-signed identity."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
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
    from botocore.exceptions import ClientError

    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ValidationError" and "does not exist" in str(error.get("Message", "")):
            region = cloudformation.meta.region_name
            raise TargetError(
                f"cannot read stack {name}: it does not exist in {region}: check --stack, --region and --profile"
            ) from None
        raise  # access denied, expired credentials: the caller's one line says which
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


class FunctionUrl:
    """POST JSON to one of the train's function URLs (AnswerApproval, BreakGlass), SigV4-signed for service `lambda`
    ("Invoking Lambda function URLs": AWS_IAM auth needs a SigV4 signature), so the function sees who called as AWS
    authenticated them."""

    def __init__(self, url: str, credentials: Any, region: str, http: requests.Session | None = None) -> None:
        self._url, self._credentials, self._region = url, credentials, region
        self._http = http or requests.Session()

    @classmethod
    def signed_by(cls, url: str, session: Any) -> Self:
        """Signed with the session's credentials, for the region the URL names (else the session's)."""
        credentials = session.get_credentials()
        if credentials is None:
            raise TargetError("no AWS credentials found: run `aws configure` or `aws sso login`, or pass --profile")
        return cls(url, credentials, cls.region_of(url, session.region_name or "us-east-1"))

    @staticmethod
    def region_of(url: str, fallback: str) -> str:
        # https://<url-id>.lambda-url.<region>.on.aws/
        host = urlsplit(url).hostname or ""
        parts = host.split(".")
        return parts[2] if len(parts) > 3 and parts[1] == "lambda-url" else fallback

    def post(self, document: dict[str, Any], what: str) -> Answered:
        body = json.dumps(document)
        request = AWSRequest(method="POST", url=self._url, data=body, headers={"Content-Type": "application/json"})
        SigV4Auth(self._credentials, "lambda", self._region).add_auth(request)
        try:
            response = self._http.post(self._url, data=body, headers=dict(request.headers.items()), timeout=30)
        except requests.RequestException as exc:
            host = urlsplit(self._url).hostname
            raise TargetError(f"cannot reach the {what} URL ({host}): {type(exc).__name__}") from None
        try:
            parsed = response.json()
        except ValueError:
            parsed = {"error": response.text[:500]}
        return Answered(response.status_code, parsed if isinstance(parsed, dict) else {"error": str(parsed)})


class Approvals(FunctionUrl):
    def answer(self, release_id: str, stage: str, approve: bool, reason: str, by: str = "") -> Answered:
        decision = "approve" if approve else "reject"
        document = {"release_id": release_id, "stage": stage, "decision": decision, "reason": reason, "by": by}
        return self.post(document, "approvals")


class Target:
    """What an operator command acts on, resolved lazily: the boto3 session (--profile, --region, the default chain),
    the stack (--stack) and from its outputs the ledger table (or --table) and the fleet (or --fleet: else the name in
    the fleet file the stack's config bucket holds, the one the next train reads)."""

    def __init__(
        self,
        session: Any,
        stack_name: str,
        table: str | None = None,
        fleet: str | None = None,
    ) -> None:
        self.session, self.stack_name = session, stack_name
        self._table, self._fleet = table, fleet
        self._stack: Stack | None = None
        self._fleet_doc: dict[str, Any] | None = None
        self._ledger: Any = None

    @property
    def stack(self) -> Stack:
        if self._stack is None:
            self._stack = describe_stack(self.session.client("cloudformation"), self.stack_name)
        return self._stack

    @property
    def table_name(self) -> str:
        return self._table or self.stack.output("LedgerTableName")

    @property
    def ledger(self) -> Any:
        if self._ledger is None:
            from release_train.adapters.ledger import Ledger

            self._ledger = Ledger(self.session.resource("dynamodb").Table(self.table_name))
        return self._ledger

    def fleet_doc(self) -> dict[str, Any]:
        """The fleet file in the stack's config bucket, as YAML (not validated: PlanRelease does that)."""
        if self._fleet_doc is None:
            import yaml

            from release_train.adapters.fleet_store import FLEET_KEY

            bucket = self.stack.output("ConfigBucketName")
            s3 = self.session.client("s3")
            try:
                body = s3.get_object(Bucket=bucket, Key=FLEET_KEY)["Body"].read()
            except s3.exceptions.NoSuchKey:
                raise TargetError(
                    f"no {FLEET_KEY} in s3://{bucket} (stack {self.stack_name}): push one (trainctl fleet push), "
                    "or pass --fleet"
                ) from None
            try:
                doc = yaml.safe_load(body)
            except yaml.YAMLError:
                doc = None
            if not isinstance(doc, dict) or not isinstance(doc.get("fleet"), str):
                raise TargetError(f"s3://{bucket}/{FLEET_KEY} names no fleet: push a valid one (trainctl fleet push)")
            self._fleet_doc = doc
        return self._fleet_doc

    @property
    def fleet(self) -> str:
        return self._fleet or str(self.fleet_doc()["fleet"])

    def identity(self) -> str:
        """The caller's IAM principal as AWS sees it (STS GetCallerIdentity)."""
        return str(self.session.client("sts").get_caller_identity()["Arn"])
