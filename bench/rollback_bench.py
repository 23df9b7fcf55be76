"""How long `trainctl rollback` takes for a release that moved 30 services' aliases in prod, against Lambda answering
UpdateAlias in 150 ms and GetAlias / GetFunctionConfiguration in 50 ms. Not a test: numbers to read against the
issue's target (30 services back in under 60 s), sequential (--concurrency 1) and concurrent (the default, 10).

    .venv/bin/python bench/rollback_bench.py [--services 30] [--functions 2] [--waves 3]

Lambda and the ledger are moto, in-process; the whole command runs (CliRunner), with the boto3 client it builds. The
latency is added at botocore's `before-call` in the calling thread, so request validation, signing and response parsing
run as they would against AWS and overlapping calls overlap their waits as real ones do. DynamoDB gets no added
latency, and Lambda's control-plane quota (15 requests per second, "Lambda quotas") is not emulated: against AWS the
adaptive retries would stretch the concurrent run to about (checks + updates + observations) / 15 seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import boto3
from click.testing import CliRunner
from moto import mock_aws

from release_train.adapters.ledger import Ledger, ReleaseRecord
from release_train.domain.fleet import parse_fleet
from release_train.domain.live import AliasMove
from release_train.domain.release import ManifestEntry, Status
from trainctl import cli

TARGET_S = 60.0
LATENCY_S = {"UpdateAlias": 0.150, "GetAlias": 0.050, "GetFunctionConfiguration": 0.050}
RELEASE = "2026-W48"
TABLE = "release-train-ledger"


def _fleet(services: int, functions: int, waves: int) -> str:
    rows = []
    for i in range(services):
        names = ", ".join(f'"svc-s{i:03d}-{{stage}}-f{j}"' for j in range(functions))
        rows.append(f"  - {{name: s{i:03d}, source: {{codecommit: s{i:03d}, branch: release}}, wave: "
                    f"{i % waves + 1}, deploy: {{functions: [{names}]}}}}")  # fmt: skip
    return "fleet: bench\nstages: [{name: staging}, {name: prod}]\nservices:\n" + "\n".join(rows) + "\n"


def _zip(n: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", f"def handler(event, context):\n    return {n}\n")
    return buffer.getvalue()


@contextmanager
def _world(services: int, functions: int, waves: int) -> Iterator[int]:
    """A closed release whose journal says every function's `live` alias went 1 -> 2 in prod. Yields the alias count."""
    with mock_aws():
        fleet = parse_fleet(_fleet(services, functions, waves))
        dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
        table = dynamodb.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK")],
            KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        )
        ledger = Ledger(table)
        record = ReleaseRecord(RELEASE, "bench", Status.RUNNING, "planned", "arn:exec", "2026-11-23T09:00:00+00:00",
                               stages=["staging", "prod"])  # fmt: skip
        ledger.create_release(record, pinned_fleet=fleet.model_dump(mode="json"))
        ledger.put_manifest(RELEASE, [ManifestEntry(s.name, "b" * 40, "a" * 40, s.wave, "x") for s in fleet.services])
        role = boto3.client("iam", region_name="us-east-1").create_role(RoleName="fn", AssumeRolePolicyDocument="{}")
        lam = boto3.client("lambda", region_name="us-east-1")
        moves = []
        for service in fleet.services:
            for function in fleet.functions_for(service, "prod"):
                lam.create_function(FunctionName=function, Runtime="python3.13", Role=role["Role"]["Arn"],
                                    Handler="app.handler", Code={"ZipFile": _zip(0)})  # fmt: skip
                for n, commit in ((1, "a" * 40), (2, "b" * 40)):
                    lam.update_function_code(FunctionName=function, ZipFile=_zip(n))
                    lam.publish_version(FunctionName=function, Description=f"release {RELEASE} commit {commit}")
                lam.create_alias(FunctionName=function, Name="live", FunctionVersion="2")
                moves.append(AliasMove("prod", service.name, function, "live", service.wave, "1", "2"))
        ledger.put_alias_moves(RELEASE, moves)
        ledger.close_release(RELEASE, Status.BLOCKED, "prod alarm", datetime.now(UTC))
        yield len(moves)


def run(services: int, functions: int, waves: int, concurrency: int) -> dict[str, Any]:
    calls: dict[str, int] = {}
    real_session = cli._session

    def session(profile: str | None, region: str | None) -> Any:
        made = real_session(profile, region)

        def wait(model: Any, **_: Any) -> None:
            calls[model.name] = calls.get(model.name, 0) + 1
            time.sleep(LATENCY_S.get(model.name, 0.0))

        made.events.register("before-call.lambda", wait)
        return made

    cli._session = session
    try:
        with _world(services, functions, waves) as aliases:
            args = ["rollback", RELEASE, "--reason", "bench", "--table", TABLE, "--concurrency", str(concurrency)]
            started = time.perf_counter()
            result = CliRunner().invoke(cli.main, [*args, "--output", "json"])
            seconds = time.perf_counter() - started
            if result.exit_code != 0:
                raise SystemExit(f"rollback exited {result.exit_code}: {result.stderr}")
            back = sum(a["state"] == "rolled back" for a in json.loads(result.stdout)["aliases"])
            assert back == aliases, (back, aliases)
    finally:
        cli._session = real_session
    return {"concurrency": concurrency, "aliases": aliases, "seconds": seconds, "calls": calls}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=30)
    parser.add_argument("--functions", type=int, default=2, help="functions (aliases) per service")
    parser.add_argument("--waves", type=int, default=3)
    options = parser.parse_args()
    # Never a real account, whatever the shell has (moto answers every call in-process).
    os.environ |= {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    print(
        f"rollback of {options.services} services x {options.functions} functions in {options.waves} waves; "
        f"latency: UpdateAlias {LATENCY_S['UpdateAlias'] * 1000:.0f} ms, GetAlias and GetFunctionConfiguration "
        f"{LATENCY_S['GetAlias'] * 1000:.0f} ms"
    )
    for concurrency in (1, 10):
        row = run(options.services, options.functions, options.waves, concurrency)
        calls = ", ".join(f"{k} {v}" for k, v in sorted(row["calls"].items()))
        print(
            f"concurrency {concurrency:>2}: {row['aliases']} aliases back in {row['seconds']:.1f} s wall; "
            f"target {TARGET_S:.0f} s; ratio {row['seconds'] / TARGET_S:.2f} ({calls})"
        )


if __name__ == "__main__":
    main()
