"""`trainctl sandbox serve` as a new user meets it: a server in its own process on loopback, and every other client
(trainctl, boto3 in this test process, the AWS CLI) in other processes, seeing one emulated account.

Readiness and progress are polled (an AWS call, `trainctl status`), never slept for; each wait has a generous real
deadline that only turns a hang into a failure. The train runs paced (--speed 600) because operators act on it while
it runs: the waits below poll for a state, so how fast this machine is changes how long they take, not what they see.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEADLINE_S = 240.0  # a failure guard only: no step takes near this unless the sandbox hangs
# One served world, one story: the tests read it in file order (the stop test needs the first train approved), so
# under xdist they run on one worker (`make test` passes --dist loadgroup).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("sandbox-serve")]

SCENARIO = {
    "name": "serve-e2e",
    "description": "catalog's prod build fails (wave 2); the prod approval is the operator's (trainctl approve)",
    "changed": "all",
    "builds": {"prod": {"catalog": {"outcome": "FAILED"}}},
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command),
        cwd=ROOT,
        env={**env, "COLUMNS": "250", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _wait_for(what: str, probe: Callable[[], Any]) -> Any:
    """Poll `probe` until it returns something truthy; fail naming `what` after the deadline."""
    end = time.monotonic() + DEADLINE_S
    last: Any = None
    while time.monotonic() < end:
        last = probe()
        if last:
            return last
        time.sleep(0.5)  # the poll interval; no outcome depends on it
    pytest.fail(f"sandbox serve: {what} did not happen within {DEADLINE_S:.0f} s (last seen: {last!r})")


class Served:
    def __init__(self, env: dict[str, str], process: subprocess.Popen[str]) -> None:
        self.env, self.process = env, process
        self.url = env["AWS_ENDPOINT_URL"]
        self.approved: tuple[str, dict[str, Any]] | None = None  # _approve_prod's answer

    def trainctl(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return _run(env or self.env, str(BIN / "trainctl"), *args)

    def json(self, *args: str) -> dict[str, Any]:
        done = self.trainctl(*args, "--output", "json")
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    def aws(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run(self.env, str(BIN / "aws"), *args)

    def client(self, service: str) -> Any:
        return boto3.session.Session(
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=self.env["AWS_SESSION_TOKEN"],
            region_name=self.env["AWS_REGION"],
        ).client(service, endpoint_url=self.url)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("serve")
    fleet = yaml.safe_load((ROOT / "fleet.yaml").read_text())
    fleet["stages"][0]["bake"] = "PT10M"  # 2 days would be 5 minutes of wall time at --speed 600
    (folder / "fleet.yaml").write_text(yaml.safe_dump(fleet))
    (folder / "scenario.yaml").write_text(yaml.safe_dump(SCENARIO))
    port = _free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    process = subprocess.Popen(
        [
            *(str(BIN / "trainctl"), "sandbox", "serve", "--port", str(port), "--speed", "600"),
            *("--fleet", str(folder / "fleet.yaml"), "--scenario", str(folder / "scenario.yaml")),
        ],
        cwd=ROOT,
        env=clean,
        stdout=subprocess.PIPE,
        stderr=(folder / "serve.log").open("w"),
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        # Ready when an AWS call answers (connection refused before the bind, 503 while the stack is created).
        probe = boto3.client(
            "sts", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )

        def answers() -> bool:
            if process.poll() is not None:
                pytest.fail(f"sandbox serve exited {process.returncode}: {(folder / 'serve.log').read_text()[-2000:]}")
            try:
                probe.get_caller_identity()
            except Exception:
                return False
            return True

        _wait_for("the server answering", answers)
        assert process.stdout is not None
        exported: dict[str, str] = {}
        while "RELEASE_TRAIN_STACK" not in exported:  # printed right after it became ready
            line = process.stdout.readline()
            assert line, f"sandbox serve closed stdout: {(folder / 'serve.log').read_text()[-2000:]}"
            name, _, value = line.strip().removeprefix("export ").partition("=")
            exported[name] = value.strip("'")
        assert exported["AWS_ENDPOINT_URL"] == url
        yield Served({**clean, **exported}, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0, (folder / "serve.log").read_text()[-2000:]
    assert "sandbox stopped" in (folder / "serve.log").read_text()


def _running(served: Served) -> dict[str, Any] | None:
    running = served.json("status")["running"]
    return dict(running) if running else None


def test_status_history_and_show_see_the_running_train(served: Served) -> None:
    running = _wait_for("a running train", lambda: _running(served))
    release_id = running["release_id"]
    assert running["status"] == "RUNNING"
    assert running["services"] == 6
    history = served.json("history")["releases"]
    assert [(r["release_id"], r["status"]) for r in history] == [(release_id, "RUNNING")]
    shown = served.json("show", release_id)
    assert shown["release"]["status"] == "RUNNING"
    assert sorted(e["service"] for e in shown["manifest"]) == sorted(
        s["name"] for s in yaml.safe_load((ROOT / "fleet.yaml").read_text())["services"]
    )


def _approve_prod(served: Served) -> tuple[str, dict[str, Any]]:
    """Once per server: wait for the prod approval, check a stranger is refused, approve it as the operator. The
    train reaches prod only through it, so every test that needs prod calls this (in any order, alone too)."""
    if served.approved is not None:
        return served.approved

    def pending() -> dict[str, Any] | None:
        running = _running(served)
        return running if running and running["pending_approvals"] else None

    running = _wait_for("the prod approval", pending)
    release_id = running["release_id"]
    assert [a["stage"] for a in running["pending_approvals"]] == ["prod"]
    # Someone who is not a ReleaseManager: the function URL authenticates them and the function refuses (exit 1).
    stranger = {**served.env, "AWS_ACCESS_KEY_ID": "AKIAEXAMPLESTRANGER1", "AWS_SECRET_ACCESS_KEY": "x"}
    stranger.pop("AWS_SESSION_TOKEN")
    refused = served.trainctl("approve", release_id, "--stage", "prod", env=stranger)
    assert refused.returncode == 1, refused.stderr
    assert "refused (403)" in refused.stderr
    approved = served.trainctl("approve", release_id, "--stage", "prod", "--by", "e2e", "--output", "json")
    assert approved.returncode == 0, approved.stderr
    served.approved = (release_id, json.loads(approved.stdout))
    return served.approved


def test_approve_a_waiting_train_as_an_approver_only(served: Served) -> None:
    release_id, answer = _approve_prod(served)
    assert answer["http_status"] == 200
    shown = served.json("show", release_id)
    (approval,) = [a for a in shown["approvals"] if a["stage"] == "prod"]
    assert approval["status"] == "APPROVED"
    assert approval["identity"] == "arn:aws:sts::123456789012:assumed-role/ReleaseManager/operator"


def test_a_build_the_scenario_fails_is_failed_for_every_client(served: Served) -> None:
    release_id, _ = _approve_prod(served)

    def ended() -> dict[str, Any] | None:
        shown = served.json("show", release_id)
        return shown if shown["release"]["status"] != "RUNNING" else None

    shown = _wait_for("the release ending", ended)
    assert shown["release"]["status"] == "FAILED"
    codebuild = served.client("codebuild")  # boto3 in this process: nothing emulated here, all over HTTP
    ids = codebuild.list_builds_for_project(projectName="train-catalog-prod")["ids"]
    assert len(ids) == 1
    (build,) = codebuild.batch_get_builds(ids=ids)["builds"]
    assert build["buildStatus"] == "FAILED"
    assert build["environment"]["environmentVariables"]
    by_cli = served.aws("codebuild", "batch-get-builds", "--ids", ids[0], "--output", "json")
    assert by_cli.returncode == 0, by_cli.stderr
    assert json.loads(by_cli.stdout)["builds"][0]["buildStatus"] == "FAILED"
    passed = codebuild.list_builds_for_project(projectName="train-identity-prod")["ids"]
    assert [b["buildStatus"] for b in codebuild.batch_get_builds(ids=passed)["builds"]] == ["SUCCEEDED"]
    # An emulated operation's error comes back as the service's error, to boto3 too.
    with pytest.raises(codebuild.exceptions.ResourceNotFoundException):
        codebuild.list_builds_for_project(projectName="train-no-such-project")


def test_aws_cli_stop_execution_is_a_console_cancel_and_the_clean_up_follows(served: Served) -> None:
    # The first train's ledger says FAILED a few steps before its execution frees the lock; on a busy machine the
    # start below could come in between and be refused. Wait for the lock, not for time.
    _wait_for("the first train freeing the lock", lambda: served.json("status")["lock"] is None)
    started = served.json("start", "--all", "--reason", "e2e: to be cancelled from the AWS CLI")
    release_id, execution_arn = started["release_id"], started["execution_arn"]
    stopped = served.aws(
        "stepfunctions", "stop-execution", "--execution-arn", execution_arn, "--error", "Console", "--cause", "e2e"
    )
    assert stopped.returncode == 0, stopped.stderr

    def closed() -> dict[str, Any] | None:
        shown = served.json("show", release_id)
        return shown if shown["release"]["status"] != "RUNNING" else None

    shown = _wait_for("the clean-up closing the release", closed)
    assert shown["release"]["status"] == "CANCELLED"  # only the clean-up Lambda closes a release CANCELLED
    assert "e2e" in shown["release"]["reason"]
    assert served.json("status")["lock"] is None  # and it freed the lock
    again = served.trainctl("cancel", release_id, "--reason", "twice")
    assert again.returncode == 1  # the action failed: the execution already ended
    assert "already ABORTED" in again.stderr


def test_exit_codes_for_bad_input_and_not_found(served: Served) -> None:
    missing = served.trainctl("show", "1999-W01")
    assert missing.returncode == 3
    assert "is not in the ledger" in missing.stderr
    assert served.trainctl("history", "-n", "0").returncode == 2


def test_serve_refuses_bad_input_before_serving(tmp_path: Path) -> None:
    bad = tmp_path / "scenario.yaml"
    bad.write_text(yaml.safe_dump({"name": "bad", "builds": {"prod": {"no-such-service": {"outcome": "FAILED"}}}}))
    done = _run(dict(os.environ), str(BIN / "trainctl"), "sandbox", "serve", "--port", "0", "--scenario", str(bad))
    assert done.returncode == 2
    assert "no-such-service" in done.stderr
    assert "Traceback" not in done.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = _run(dict(os.environ), str(BIN / "trainctl"), "sandbox", "serve", "--port", port)
    assert done.returncode == 2
    assert f"--port {port}: cannot listen" in done.stderr


def _ended_release(served: Served) -> str:
    """The module's train after its prod approval, once it ended (catalog's prod build fails in wave 2: FAILED after
    prod wave 1, company-service's canary included, moved its aliases)."""
    release_id, _ = _approve_prod(served)

    def ended() -> str | None:
        return release_id if served.json("show", release_id)["release"]["status"] != "RUNNING" else None

    return str(_wait_for("the release ending", ended))


def test_after_prod_moved_aliases_report_plan_hold_and_rollback_work_against_the_served_sandbox(
    served: Served, tmp_path: Path
) -> None:
    release_id = _ended_release(served)
    if served.json("status")["running"]:  # another test's manual train: let its clean-up finish first
        _wait_for("no train running", lambda: not served.json("status")["running"])

    # report: one page, the release in it
    page = tmp_path / "report.html"
    reported = served.trainctl("report", release_id, "--html", str(page))
    assert reported.returncode == 0, reported.stderr
    html = page.read_text()
    assert release_id in html and "catalog" in html and "company-service" in html

    # plan: prod runs the new commits of wave 1 only, so the rest would ride again; nothing is started
    before = served.json("history")["releases"]
    plan = served.json("plan")
    riding = {row["service"] for row in plan["services"]}
    assert plan["would_leave"] is True and "catalog" in riding and "company-service" not in riding
    assert served.json("history")["releases"] == before

    # hold, then unhold: plan says why it would not leave, then leaves again; both audited with the identity
    held = served.trainctl("hold", "--reason", "e2e incident", "--by", "e2e", "--output", "json")
    assert held.returncode == 0, held.stderr
    blocked = served.trainctl("plan", "--output", "json")
    assert blocked.returncode == 1 and json.loads(blocked.stdout)["blocked_by"][0]["kind"] == "hold"
    lifted = served.trainctl("unhold", "--reason", "e2e incident over", "--by", "e2e", "--output", "json")
    assert lifted.returncode == 0, lifted.stderr
    assert json.loads(lifted.stdout)["action"] == "hold_removed"
    assert served.trainctl("plan", "--output", "json").returncode == 0

    # rollback: a dry run changes nothing, then every alias the release moved in prod goes back
    dry = served.json("rollback", release_id, "--reason", "e2e: put prod back", "--dry-run")
    moved = [a for a in dry["aliases"] if a["state"] == "would roll back"]
    rolled = {a["service"] for a in moved}  # the services whose prod deploys moved aliases (catalog's build failed)
    assert "company-service" in rolled and "catalog" not in rolled
    lam = served.client("lambda")
    first = moved[0]
    assert lam.get_alias(FunctionName=first["function"], Name=first["alias"])["FunctionVersion"] == first["from"]
    done = served.json("rollback", release_id, "--reason", "e2e: put prod back")
    assert done["result"] == "rolled back"
    for alias in moved:
        assert lam.get_alias(FunctionName=alias["function"], Name=alias["alias"])["FunctionVersion"] == alias["to"]
    events = [e["kind"] for e in served.json("show", release_id)["events"]]
    assert "rollback" in events
