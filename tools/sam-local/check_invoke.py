"""Check one `sam local invoke` of a traffic hook: did the hook's own code run in the container?

With no AWS endpoint reachable (AWS_ENDPOINT_URL points at a closed loopback port) the hook is expected to stop at
its first AWS call. Passes only with all of:
  1. the runtime in the container took the invocation: SAM_CONTAINER_ID, then START / END / REPORT RequestId;
  2. the hook itself logged: a Powertools JSON line with service "release-train", this function's name and the
     event's DeploymentId (keys the hook appends in hook_lambda.HookRuntime.handle);
  3. it stopped at the network: the response is a botocore connection error (EndpointConnectionError ...) raised
     through /var/task/app.py, or the hook's log carries that error for the configured endpoint.
Anything else (no image, container or runtime start failure, import error, a different error) fails, with the
lines that show why. Standard library only; exit code 0 = pass.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

CONNECTION_ERRORS = {"EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ReadTimeoutError"}
START_FAILURES = re.compile(
    r"Runtime\.(ExitError|ImportModuleError|HandlerNotFound|UserCodeSyntaxError|InvalidEntrypoint)"
    r"|exec format error|No such image|Error response from daemon|^Error: "
    r"|Timed out while attempting to establish a connection to the container",
    re.MULTILINE,
)


def json_lines(text: str) -> list[dict[str, Any]]:
    records = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                records.append(value)
    return records


def short(value: Any, limit: int = 160) -> str:
    text = str(value).replace("\n", " | ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--function", required=True)
    parser.add_argument("--event", type=Path, required=True)
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--sam-exit-code", type=int, required=True)
    parser.add_argument("--stdout", type=Path, required=True)
    parser.add_argument("--stderr", type=Path, required=True)
    args = parser.parse_args()

    deployment_id = json.loads(args.event.read_text())["DeploymentId"]
    out, err = args.stdout.read_text(errors="replace"), args.stderr.read_text(errors="replace")
    evidence: list[str] = []
    problems: list[str] = []

    # 1. the runtime in the container took the invocation
    container = re.search(r"SAM_CONTAINER_ID: (\w{12})", err)
    start = re.search(r"^START RequestId: (\S+)", err, re.MULTILINE)
    report = re.search(r"^REPORT RequestId: .*", err, re.MULTILINE)
    if container and start and report and re.search(r"^END RequestId:", err, re.MULTILINE):
        evidence.append(f"container {container.group(1)}: {start.group(0)}")
        evidence.append(short(report.group(0).strip().replace("\t", "  "), 220))
    else:
        problems.append("no container ran the invocation (SAM_CONTAINER_ID / START / END / REPORT RequestId missing)")
    if args.sam_exit_code != 0:
        problems.append(f"sam local invoke exited {args.sam_exit_code}")
    failure = START_FAILURES.search(err + "\n" + out)
    if failure:
        line = next(li for li in (err + "\n" + out).splitlines() if failure.group(0) in li)
        problems.append(f"container/runtime start failure: {short(line, 300)}")

    # 2. the hook's own Powertools log line
    hook_logs = [
        r
        for r in json_lines(err)
        if r.get("service") == "release-train"
        and r.get("function_name") == args.function
        and r.get("deployment_id") == deployment_id
    ]
    if hook_logs:
        for r in hook_logs[:3]:
            fields = {k: r.get(k) for k in ("level", "location", "message", "hook_phase", "exception_name") if k in r}
            evidence.append("hook log: " + short(json.dumps(fields), 300))
            trace = r.get("stack_trace")
            if isinstance(trace, dict) and trace.get("value"):
                evidence.append(f"  {trace.get('type')}: {short(trace['value'], 200)}")
    else:
        problems.append(f"no Powertools log line from the hook (service release-train, deployment_id {deployment_id})")

    # 3. stopped at its first AWS call, at the network
    response: dict[str, Any] | None = None
    try:
        parsed = json.loads(out.strip().splitlines()[-1]) if out.strip() else None
        response = parsed if isinstance(parsed, dict) else None
    except json.JSONDecodeError:
        pass
    hook_saw_endpoint = any(
        "Could not connect to the endpoint URL" in str(r.get("exception", "")) and args.endpoint_url in str(r)
        for r in hook_logs
    )
    if response is None:
        problems.append(f"no JSON response on stdout: {short(out, 300)!r}")
    elif "errorType" in response:
        frames = [f for f in response.get("stackTrace", []) if "/var/task/" in f or "/release_train/" in f]
        evidence.append(f"response: errorType {response['errorType']}: {short(response.get('errorMessage'))}")
        evidence.extend("  raised through " + short(f.strip().split("\n")[0].strip(), 120) for f in frames)
        if response["errorType"] not in CONNECTION_ERRORS:
            problems.append(f"the hook failed with {response['errorType']}, not a connection error to the endpoint")
        elif not any("/var/task/app.py" in f for f in frames):
            problems.append("the connection error was not raised through the handler (/var/task/app.py)")
    elif hook_saw_endpoint:
        evidence.append(f"response (hook answered after the AWS call failed): {short(json.dumps(response), 300)}")
    else:
        problems.append(f"unexpected response (no AWS call failed?): {short(json.dumps(response), 300)}")

    name = args.function
    for line in evidence:
        print(f"[check] {name}: {line}")
    if problems:
        for line in problems:
            print(f"[check] {name}: FAIL: {line}", file=sys.stderr)
        tail = "\n".join("    " + short(line, 300) for line in err.strip().splitlines()[-15:])
        print(f"[check] last lines of {args.stderr}:\n{tail}", file=sys.stderr)
        return 1
    print(f"[check] {name}: PASS - the hook's code ran in the container and stopped at its first AWS call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
