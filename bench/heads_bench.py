"""How long PlanRelease takes to resolve a big fleet's branch heads, against sources that take 200 ms of wall time to
answer each request: 2,000 GitHub heads, 2,000 CodeCommit heads, then both in one call, as PlanRelease asks.
Not a test: numbers to read, against PlanReleaseFunction's Timeout in template.yaml.

    .venv/bin/python bench/heads_bench.py [--services 2000] [--latency 0.2]

The sources are local stand-ins, nothing leaves this machine:
- GitHub: the sandbox's GraphQL GitHub on 127.0.0.1 (`trainctl.sandbox.sources`), each HTTP request answered no
  sooner than `--latency` seconds after it arrived (graphql-core's parsing and execution count within that time);
- CodeCommit: the boto3 client PlanRelease uses (`release_train.adapters.aws.client`, adaptive retries), each
  GetBranch answered at botocore's `before-send` after `--latency` seconds: request signing, parameter validation and
  response parsing run as they would against AWS, only the network is replaced.
The adapter is the one PlanRelease runs (`release_train.adapters.sources.Sources`, its default batch size and pool).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from botocore.awsrequest import AWSResponse
from samtranslator.yaml_helper import yaml_parse

from release_train.adapters.sources import CODECOMMIT_WORKERS, GITHUB_BATCH, Sources
from release_train.domain.fleet import CodeCommitSource, GitHubSource
from trainctl.sandbox.sources import Sources as EmulatedSources

ROOT = Path(__file__).resolve().parent.parent
TOKEN_SECRET = "release-train/github-token"


def plan_release_timeout() -> int:
    template = yaml_parse((ROOT / "template.yaml").read_text())
    own = template["Resources"]["PlanReleaseFunction"]["Properties"].get("Timeout")
    return int(own if own is not None else template["Globals"]["Function"]["Timeout"])


def commit(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


class Overlap:
    """Counts the calls of a function, and the most in flight at once."""

    def __init__(self) -> None:
        self.calls = self.now = self.most = 0
        self._lock = threading.Lock()

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls += 1
                self.now += 1
                self.most = max(self.most, self.now)
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.now -= 1

        return counted


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def slow_get_branch(latency: float) -> Callable[..., AWSResponse]:
    """A `before-send` handler answering GetBranch after `latency` wall seconds, as CodeCommit would."""

    def answer(request: Any, **_: Any) -> AWSResponse:
        time.sleep(latency)
        params = json.loads(request.body)
        body = {"branch": {"branchName": params["branchName"], "commitId": commit(params["repositoryName"])}}
        headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": "bench"}
        return AWSResponse(request.url, 200, headers, _Body(json.dumps(body).encode()))

    return answer


class Secrets:
    """Secrets Manager as Powertools Parameters reads it: one token."""

    def get_secret_value(self, SecretId: str, **_: Any) -> dict[str, Any]:
        return {"Name": SecretId, "SecretString": "ghp_bench"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=2000, help="heads per source kind")
    parser.add_argument("--latency", type=float, default=0.2, help="wall seconds each request takes to answer")
    args = parser.parse_args()
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # Lambda sets it (and AWS_REGION)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")  # requests are signed, never sent: answered at before-send
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ["NO_PROXY"] = "127.0.0.1"
    from release_train.adapters.aws import client

    n, latency, timeout = args.services, args.latency, plan_release_timeout()
    github = EmulatedSources(SimpleNamespace())  # type: ignore[arg-type]
    github.latency = latency
    url = github.start_github()
    github_overlap, codecommit_overlap = Overlap(), Overlap()
    github.reply = github_overlap.wrap(github.reply)  # type: ignore[method-assign]
    codecommit = client("codecommit")
    codecommit.meta.events.register(
        "before-send.codecommit.GetBranch", codecommit_overlap.wrap(slow_get_branch(latency))
    )
    on_github = [
        GitHubSource(github=f"acme/svc-{i:04d}", branch="release", token_secret=TOKEN_SECRET) for i in range(n)
    ]
    on_codecommit = [CodeCommitSource(codecommit=f"svc-{i:04d}", branch="release") for i in range(n)]
    for source in on_github:
        github.github_heads[(source.github, source.branch)] = commit(source.github)

    print(
        f"PlanReleaseFunction Timeout: {timeout} s; every request answered after {latency * 1000:.0f} ms; "
        f"GitHub: {GITHUB_BATCH} branches per GraphQL query, one query at a time; "
        f"CodeCommit: {CODECOMMIT_WORKERS} GetBranch calls at once"
    )
    print(
        f"{'sources':<28} {'heads':>6} {'GitHub queries':>14} {'GetBranch calls':>15} {'most at once':>12} "
        f"{'wall s':>7} {'of timeout':>10}"
    )
    rows = [
        ("GitHub", on_github),
        ("CodeCommit", on_codecommit),
        ("GitHub + CodeCommit, 1 call", [*on_github, *on_codecommit]),
    ]
    try:
        for label, sources in rows:
            queries, calls = github_overlap.calls, codecommit_overlap.calls
            github_overlap.most = codecommit_overlap.most = 0
            adapter = Sources(codecommit, Secrets(), url)  # a fresh adapter (and token cache) per row
            started = time.monotonic()
            heads = adapter.heads(sources)
            wall = time.monotonic() - started
            assert len(heads) == len(sources)
            queries, calls = github_overlap.calls - queries, codecommit_overlap.calls - calls
            at_once = f"{github_overlap.most} + {codecommit_overlap.most}"
            print(
                f"{label:<28} {len(sources):>6} {queries:>14} {calls:>15} {at_once:>12} {wall:>7.1f} "
                f"{wall / timeout:>10.0%}",
                flush=True,
            )
    finally:
        github.stop_github()
    print(
        f"expected: GitHub ceil({n}/{GITHUB_BATCH}) x {latency} s = {math.ceil(n / GITHUB_BATCH) * latency:.1f} s; "
        f"CodeCommit ceil({n}/{CODECOMMIT_WORKERS}) x {latency} s = "
        f"{math.ceil(n / CODECOMMIT_WORKERS) * latency:.1f} s; together, the longer of the two"
    )
    print(
        f"before (one request per head, one at a time): {n} requests, {n * latency:.0f} s per source kind "
        f"= {n * latency / timeout:.1f}x the timeout"
    )
    print("target: well under the timeout (PlanRelease also writes the manifest and takes the lock within it)")


if __name__ == "__main__":
    main()
