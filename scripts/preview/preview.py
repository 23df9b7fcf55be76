#!/usr/bin/env python3
"""What .github/workflows/service-preview.yml computes: a pull request's stack name, the stack's URL, the PR comment,
whether the stack exists, and what its deletion leaves behind.

Standard library only: the workflow runs this with the runner's Python before (or without) installing anything.
AWS answers come in as the AWS CLI's JSON output (`aws cloudformation ... --output json`), shaped as botocore's
CloudFormation model says. Exit codes follow trainctl's: 0 ok, 2 invalid input (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# CreateStack, StackName: "can contain only alphanumeric characters (case sensitive) and hyphens. It must start with an
# alphabetical character and can't be longer than 128 characters."
# https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStack.html
STACK_NAME = re.compile(r"[a-zA-Z][-a-zA-Z0-9]*")
STACK_NAME_MAX = 128
DIGEST_CHARS = 6  # sha256 hex chars that keep two truncated service names apart

# DeletionPolicy values that leave the resource (or a snapshot of it) behind when the stack is deleted.
# https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-deletionpolicy.html
RETAINING_POLICIES = ("Retain", "RetainExceptOnCreate", "Snapshot")

STATUSES = {
    "success": "Deployed",
    "failure": "Deploy or tests failed",
    "cancelled": "Deploy cancelled (a newer push or the PR closing took over)",
    "deleted": "Deleted (the pull request was closed)",
}


class PreviewError(Exception):
    """Bad input or an AWS answer that cannot be used: reported as one line, exit code 2."""


def stack_name(service: str, pr: int, max_length: int = STACK_NAME_MAX) -> str:
    """`<service>-pr-<n>`, made a valid CloudFormation stack name.

    Characters outside `[-a-zA-Z0-9]` become hyphens. When the name is longer than `max_length` the service part is
    shortened and a digest of the whole service name added, so two long services never share a preview stack; the
    `-pr-<n>` suffix is always kept whole. `max_length` can be below 128 when the template derives other names from
    the stack name (the example names functions `${AWS::StackName}-delete`, and a function name has at most 64).
    """
    if pr < 1:
        raise PreviewError(f"--pr {pr}: a pull request number is a positive integer")
    if not 1 <= max_length <= STACK_NAME_MAX:
        raise PreviewError(f"--max-length {max_length}: must be between 1 and {STACK_NAME_MAX}")
    cleaned = re.sub(r"-{2,}", "-", re.sub(r"[^-a-zA-Z0-9]", "-", service)).rstrip("-")
    if not re.match(r"[a-zA-Z]", cleaned):
        raise PreviewError(
            f"--service {service!r}: a stack name must start with a letter (A-Z, a-z); prefix it, e.g. svc-{service}"
        )
    suffix = f"-pr-{pr}"
    name = f"{cleaned}{suffix}"
    if len(name) <= max_length:
        return name
    keep = max_length - len(suffix) - DIGEST_CHARS - 1
    if keep < 1:
        raise PreviewError(f"--max-length {max_length}: too short for a service name and {suffix!r}")
    digest = hashlib.sha256(cleaned.encode()).hexdigest()[:DIGEST_CHARS]
    return f"{cleaned[:keep].rstrip('-')}-{digest}{suffix}"


def _stacks(describe_stacks: dict[str, Any], stack: str) -> dict[str, Any]:
    stacks = describe_stacks.get("Stacks")
    if not isinstance(stacks, list) or len(stacks) != 1:
        raise PreviewError(f"describe-stacks for {stack}: expected one stack, got {stacks!r:.200}")
    found: dict[str, Any] = stacks[0]
    return found


def output_value(describe_stacks: dict[str, Any], key: str, stack: str = "the stack") -> str:
    """The value of output `key` in a DescribeStacks response (Stacks[0].Outputs[].OutputKey/OutputValue)."""
    found = _stacks(describe_stacks, stack)
    outputs = {o.get("OutputKey"): o.get("OutputValue") for o in found.get("Outputs") or []}
    value = outputs.get(key)
    if not isinstance(value, str) or not value:
        available = ", ".join(sorted(k for k in outputs if isinstance(k, str))) or "none"
        raise PreviewError(
            f"--output-key {key!r}: {found.get('StackName', stack)} has no such output (outputs: {available}); "
            "name the output that holds the service's URL"
        )
    return value


def stack_exists(list_stacks: dict[str, Any], stack: str) -> bool:
    """Whether a ListStacks response holds `stack` in any state but DELETE_COMPLETE (ListStacks keeps deleted stacks
    for 90 days: https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ListStacks.html)."""
    summaries = list_stacks.get("StackSummaries")
    if not isinstance(summaries, list):
        raise PreviewError("list-stacks: the answer has no StackSummaries")
    return any(s.get("StackName") == stack and s.get("StackStatus") != "DELETE_COMPLETE" for s in summaries)


@dataclass(frozen=True)
class Retained:
    logical_id: str
    resource_type: str
    physical_id: str
    policy: str

    def line(self) -> str:
        return f"{self.resource_type} {self.logical_id} {self.physical_id} (DeletionPolicy {self.policy})"


def retained_resources(get_template: dict[str, Any], list_resources: dict[str, Any]) -> list[Retained]:
    """The stack's resources that deleting it leaves behind, from GetTemplate (TemplateStage Processed: after the SAM
    transform, so every resource is there) and ListStackResources (their physical ids).

    botocore decodes a JSON TemplateBody into an object (handlers.json_decode_template_body); the AWS CLI prints that
    object, so both a JSON string and an object are accepted. A YAML body is refused: ask for the Processed stage.
    """
    body = get_template.get("TemplateBody")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            raise PreviewError("get-template: the template body is not JSON; pass --template-stage Processed") from None
    if not isinstance(body, dict):
        raise PreviewError("get-template: the answer has no TemplateBody")
    summaries = list_resources.get("StackResourceSummaries")
    if not isinstance(summaries, list):
        raise PreviewError("list-stack-resources: the answer has no StackResourceSummaries")
    physical = {s.get("LogicalResourceId"): s.get("PhysicalResourceId") or "(no physical id)" for s in summaries}
    retained = []
    for logical_id, resource in (body.get("Resources") or {}).items():
        policy = resource.get("DeletionPolicy")
        if policy in RETAINING_POLICIES and logical_id in physical:
            retained.append(Retained(logical_id, str(resource.get("Type")), str(physical[logical_id]), policy))
    return retained


def comment_body(
    *,
    service: str,
    stack: str,
    status: str,
    region: str,
    url: str = "",
    commit: str = "",
    run_url: str = "",
    retained: Sequence[str] = (),
) -> str:
    """The one PR comment a preview keeps up to date (the workflow edits it in place on every push)."""
    if status not in STATUSES:
        raise PreviewError(f"--status {status!r}: one of {', '.join(STATUSES)}")
    if url and not url.startswith("https://"):
        raise PreviewError(f"--url {url!r}: a preview URL starts with https://")
    if commit and not re.fullmatch(r"[0-9a-f]{7,40}", commit):
        raise PreviewError(f"--commit {commit!r}: a git commit sha (7 to 40 lowercase hex characters)")
    lines = [f"### Preview of `{service}`: {STATUSES[status]}", ""]
    if status == "deleted":
        lines.append(f"Stack `{stack}` ({region}) was deleted.")
    else:
        lines.append(f"- Stack: `{stack}` ({region})")
        if commit:
            lines.append(f"- Commit: `{commit[:12]}`")
        if url:
            lines.append(f"- URL: {url}")
    if retained:
        lines += ["", "Left behind by the stack's DeletionPolicy (delete them by hand if unwanted):"]
        lines += [f"- `{r}`" for r in retained]
    if run_url:
        lines += ["", f"[Workflow run]({run_url})"]
    return "\n".join(lines) + "\n"


def _read_json(path: str) -> dict[str, Any]:
    try:
        loaded = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise PreviewError(f"{path}: cannot read JSON ({exc})") from None
    if not isinstance(loaded, dict):
        raise PreviewError(f"{path}: expected a JSON object")
    return loaded


def _set_output(path: str | None, key: str, value: str) -> None:
    """`key=value` appended to $GITHUB_OUTPUT (single-line values only), and the value printed."""
    if "\n" in value or "\r" in value:
        raise PreviewError(f"{key}: a step output must be one line")
    if path:
        with Path(path).open("a", encoding="utf-8") as out:
            out.write(f"{key}={value}\n")
    print(value)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="preview.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    name = sub.add_parser("stack-name", help="the PR's stack name")
    name.add_argument("--service", required=True)
    name.add_argument("--pr", required=True, type=int)
    name.add_argument("--max-length", type=int, default=STACK_NAME_MAX)
    name.add_argument("--github-output", help="append stack-name=<name> to this file ($GITHUB_OUTPUT)")

    url = sub.add_parser("url", help="an output of the stack (aws cloudformation describe-stacks --output json)")
    url.add_argument("--describe-stacks", required=True, metavar="FILE")
    url.add_argument("--output-key", required=True)
    url.add_argument("--github-output")

    exists = sub.add_parser("exists", help="true/false: the stack exists (aws cloudformation list-stacks)")
    exists.add_argument("--list-stacks", required=True, metavar="FILE")
    exists.add_argument("--stack", required=True)
    exists.add_argument("--github-output")

    comment = sub.add_parser("comment", help="the PR comment (markdown) on stdout")
    comment.add_argument("--service", required=True)
    comment.add_argument("--stack", required=True)
    comment.add_argument("--status", required=True)
    comment.add_argument("--region", required=True)
    comment.add_argument("--url", default="")
    comment.add_argument("--commit", default="")
    comment.add_argument("--run-url", default="")
    comment.add_argument("--retained", metavar="FILE", help="the output of `retained` (one resource per line)")

    retained = sub.add_parser("retained", help="resources the stack's deletion leaves behind, one per line")
    retained.add_argument("--get-template", required=True, metavar="FILE")
    retained.add_argument("--list-stack-resources", required=True, metavar="FILE")
    return parser


def run(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "stack-name":
        _set_output(args.github_output, "stack-name", stack_name(args.service, args.pr, args.max_length))
    elif args.command == "url":
        value = output_value(_read_json(args.describe_stacks), args.output_key)
        _set_output(args.github_output, "url", value)
    elif args.command == "exists":
        found = stack_exists(_read_json(args.list_stacks), args.stack)
        _set_output(args.github_output, "exists", "true" if found else "false")
    elif args.command == "comment":
        left = Path(args.retained).read_text().splitlines() if args.retained else []
        print(
            comment_body(
                service=args.service,
                stack=args.stack,
                status=args.status,
                region=args.region,
                url=args.url,
                commit=args.commit,
                run_url=args.run_url,
                retained=[line for line in left if line.strip()],
            ),
            end="",
        )
    else:
        for resource in retained_resources(_read_json(args.get_template), _read_json(args.list_stack_resources)):
            print(resource.line())
    return 0


def main() -> int:
    try:
        return run(sys.argv[1:])
    except PreviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
