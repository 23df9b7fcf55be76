"""One convention for every operator command.

Exit codes: 0 ok; 1 the release or the action failed (a release that ended other than SUCCEEDED under `--watch`, a
start refused because a train runs, an approval refused); 2 usage or invalid input (click's own usage errors are 2
too); 3 AWS, credentials or not found (no credentials, access denied, the stack, table, release or execution does not
exist). An expected error is one line on stderr saying what is wrong and what to do, never a traceback.

`--output json` prints exactly one JSON document on stdout and nothing else; tables go to stdout too, notes and errors
to stderr. Text from the ledger or AWS is never read as rich markup (a pattern like '^[a-z]{0,62}$' prints intact).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape
from rich.text import Text

OK, FAILED, USAGE, AWS = 0, 1, 2, 3

err = Console(stderr=True)
out = Console()


class CommandError(Exception):
    """An expected failure: `message` says what is wrong and what to do; `code` is the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def fail(message: str, code: int) -> NoReturn:
    err.print(f"[red]error:[/] {escape(one_line(message))}", soft_wrap=True)
    sys.exit(code)


def note(message: str) -> None:
    err.print(f"[yellow]note:[/] {escape(one_line(message))}", soft_wrap=True)


def text(value: object, style: str = "") -> Text:
    """A table cell: plain text, never parsed as markup."""
    return Text("-" if value is None or value == "" else str(value), style=style)


_CREDENTIALS = {
    "NoCredentialsError": "no AWS credentials found: run `aws configure` or `aws sso login`, or pass --profile",
    "PartialCredentialsError": "incomplete AWS credentials: check your profile or AWS_* variables, or pass --profile",
    "NoRegionError": "no AWS region: pass --region, or set AWS_REGION or a region in your profile",
    "ProfileNotFound": "that AWS profile is not in your AWS config: check --profile (aws configure list-profiles)",
    "SSOTokenLoadError": "your AWS SSO session is not logged in: run `aws sso login` (with --profile)",
    "UnauthorizedSSOTokenError": "your AWS SSO session expired: run `aws sso login` (with --profile)",
    "TokenRetrievalError": "your AWS SSO session expired: run `aws sso login` (with --profile)",
}
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedException"}
_EXPIRED = {
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
}
_NOT_FOUND = {
    "ResourceNotFoundException",
    "ExecutionDoesNotExist",
    "StateMachineDoesNotExist",
    "NoSuchBucket",
    "NoSuchKey",
    "NotFoundException",
}


def describe_aws_error(exc: BaseException) -> str:
    """One line: what AWS said, and what to do about it."""
    from botocore.exceptions import ClientError, EndpointConnectionError

    name = type(exc).__name__
    if name in _CREDENTIALS:
        return f"{_CREDENTIALS[name]} ({one_line(exc)})"
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach the AWS endpoint ({one_line(exc)}): check your network, --region or AWS_ENDPOINT_URL"
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        message = one_line(exc.response.get("Error", {}).get("Message", "")) or code
        operation = exc.operation_name
        if code in _DENIED:
            return (
                f"AWS denied {operation} to your identity ({message}): ask for that permission (docs/iam.md), "
                "or use a profile that has it (--profile)"
            )
        if code in _EXPIRED:
            return f"AWS did not accept your credentials in {operation} ({code}): refresh them (aws sso login)"
        if code in _NOT_FOUND:
            return f"{operation}: {message}: check the name, --stack, --region and --profile"
        return f"AWS error in {operation}: {code}: {message}"
    return f"AWS error: {name}: {one_line(exc)}"


@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """Turn every expected failure into one line on stderr and its exit code."""
    from botocore.exceptions import BotoCoreError, ClientError

    from release_train.domain.errors import InvalidInput
    from trainctl.target import TargetError

    try:
        yield
    except CommandError as exc:
        fail(str(exc), exc.code)
    except InvalidInput as exc:
        fail(f"{exc.source} is invalid: " + "; ".join(exc.problems), USAGE)
    except TargetError as exc:
        fail(str(exc), AWS)
    except (BotoCoreError, ClientError) as exc:
        fail(describe_aws_error(exc), AWS)


def output_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--output",
        "-o",
        "output",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="table for people; json: one JSON document on stdout, nothing else",
    )(command)


def emit(output: str, doc: dict[str, Any], render: Callable[[dict[str, Any]], None]) -> None:
    if output == "json":
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        render(doc)
