"""trainctl: run a simulated train locally, or operate the deployed one (approve, reject, hold, cancel, status)."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from release_train.domain.errors import InvalidInput

ROOT = Path(__file__).resolve().parent.parent
console = Console(stderr=True)
out = Console()


@contextlib.contextmanager
def _bad_input_exits_2() -> Iterator[None]:
    """Invalid input is the caller's to fix: say what and where on stderr, exit 2, no traceback."""
    try:
        yield
    except InvalidInput as exc:
        # escape: field paths and patterns contain [brackets] rich would read as markup; soft_wrap: no inserted
        # line breaks inside a message a script may grep.
        console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(2)


@click.group()
@click.version_option(package_name="release-train")
def main() -> None:
    """Operate the release train."""


# --- simulate -----------------------------------------------------------------------------------------------------


class _Progress:
    """Live view: the state the train is in, builds per stage, virtual time."""

    def __init__(self) -> None:
        self.state = "starting"
        self.stage = "-"
        self.builds: dict[str, dict[str, int]] = {}
        self.virtual = ""
        self._lock = threading.Lock()

    def __call__(self, observed: Any) -> None:
        with self._lock:
            self.virtual = observed.virtual_time.strftime("%a %d %b %H:%M")
            if observed.state:
                self.state = observed.state
                stage = (observed.input or {}).get("stage")
                if isinstance(stage, dict):
                    stage = stage.get("name")
                if stage:
                    self.stage = str(stage)
                if observed.state == "Build" and stage:
                    counts = self.builds.setdefault(str(stage), {"started": 0})
                    counts["started"] += 1

    def render(self) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_row("[bold]virtual time[/]", self.virtual or "-")
        table.add_row("[bold]stage[/]", self.stage)
        table.add_row("[bold]state[/]", self.state)
        for stage, counts in self.builds.items():
            table.add_row(f"[bold]{stage} builds[/]", str(counts["started"]))
        return table


@main.command()
@click.option(
    "--fleet",
    "fleet_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=ROOT / "fleet.yaml",
    show_default=True,
    help="fleet file to release",
)
@click.option(
    "--scenario",
    "scenario_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="what the emulated world does (default: everything succeeds, prod approved)",
)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object (for machines) instead of tables")
@click.option(
    "--pace",
    type=click.FloatRange(min=1.0),
    default=None,
    help="virtual seconds per wall second, to watch a train unfold (default: as fast as the machine goes)",
)
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="write the functions' structured logs here",
)
def simulate(
    fleet_path: Path, scenario_path: Path | None, as_json: bool, pace: float | None, log_path: Path | None
) -> None:
    """Run a whole release train locally on the embedded emulator (no AWS account needed)."""
    from trainctl.sandbox.runner import simulate as run
    from trainctl.sandbox.scenario import Scenario, load_scenario

    logging.getLogger("moto").setLevel(logging.CRITICAL)  # the interpreter logs every caught error at WARNING
    # moto warns about each template resource it skips, Powertools about in-process metric reuse: not the user's news.
    warnings.filterwarnings("ignore", module=r"moto\..*")
    warnings.filterwarnings("ignore", module=r"aws_lambda_powertools\..*")
    with _bad_input_exits_2():
        scenario = (
            load_scenario(scenario_path)
            if scenario_path
            else Scenario(name="default", approvals={"prod": {"decision": "approve"}})
        )
        source = str(scenario_path) if scenario_path else "default scenario"
        progress = _Progress()
        if as_json or not console.is_terminal:
            result = run(fleet_path, scenario, ROOT, None if as_json else progress, pace, log_path, source)
        else:
            with Live(progress.render(), console=console, refresh_per_second=8) as live:

                def update(observed: Any) -> None:
                    progress(observed)
                    live.update(progress.render())

                result = run(fleet_path, scenario, ROOT, update, pace, log_path, source)
    if as_json:
        doc = result.to_json()
        doc["scenario"] = scenario.name
        out.print_json(json.dumps(doc, default=str))
    else:
        _summary(result, scenario.name)
    sys.exit(0 if result.status == "SUCCEEDED" else 1)


def _summary(result: Any, scenario: str) -> None:
    colour = "green" if result.status == "SUCCEEDED" else "red"
    out.print(
        f"[bold]release {result.release_id or '-'}[/] ({scenario}): [{colour}]{result.status}[/] — {result.reason}"
    )
    for stage in result.stages:
        table = Table(title=f"stage {stage['name']}", title_justify="left")
        for column in ("service", "wave", "commit", "build"):
            table.add_column(column)
        for service in stage["services"]:
            status = service["build_status"]
            style = {"SUCCEEDED": "green", "NOT_BUILT": "dim"}.get(status, "red")
            table.add_row(service["name"], str(service["wave"]), service["commit"][:12], f"[{style}]{status}[/]")
        out.print(table)
    order = [stage["name"] for stage in result.stages]
    for gate in sorted(result.gates, key=lambda g: order.index(g["stage"]) if g["stage"] in order else len(order)):
        reasons = "; ".join(gate["reasons"]) or "all evidence good"
        out.print(f"gate {gate['stage']}: {gate['verdict']} — {reasons}")
    for deployment in result.deployments:
        hooks = ", ".join(f"{h['phase']} {h['status']}" for h in deployment.get("hooks", []))
        rolled_back = " (rolled back)" if deployment.get("rolled_back") else ""
        versions = f"v{deployment.get('current_version')} -> v{deployment.get('target_version')}"
        config = str(deployment.get("deployment_config", "")).removeprefix("CodeDeployDefault.")
        out.print(
            f"canary {deployment['function']} {versions} ({config}): {deployment['status']}{rolled_back}"
            + (f" — {hooks}" if hooks else "")
        )
    if result.second_start:
        out.print(f"second start: {result.second_start['status']} ({result.second_start['error']})")
    hours = result.virtual_duration_s / 3600
    out.print(
        f"virtual {hours:.1f} h in {result.wall_s:.2f} s wall · {result.history_events} history events "
        f"({result.history_events / 250:.1f}% of 25,000) · {result.state_transitions} transitions "
        f"(${result.estimated_cost_usd:.4f}) · {result.builds_started} builds, {result.builds_throttled} throttled"
    )


# --- operating the deployed train ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _aws_errors_exit_3() -> Iterator[None]:
    """AWS, credentials or not-found problems: one line saying what, exit 3 (never a traceback)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from trainctl.target import TargetError

    try:
        yield
    except TargetError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(3)
    except (BotoCoreError, ClientError) as exc:
        console.print(f"[red]AWS error:[/] {escape(type(exc).__name__)}: {escape(str(exc))}", soft_wrap=True)
        sys.exit(3)


def _session(profile: str | None, region: str | None) -> Any:
    import boto3

    return boto3.Session(profile_name=profile, region_name=region)


def _ledger(table: str, session: Any = None) -> Any:
    import boto3

    from release_train.adapters.ledger import Ledger

    return Ledger((session or boto3).resource("dynamodb").Table(table))


def _stack(session: Any, name: str) -> Any:
    from trainctl.target import describe_stack

    return describe_stack(session.client("cloudformation"), name)


table_option = click.option(
    "--table", envvar="RELEASE_TRAIN_TABLE", required=True, help="the ledger table (stack output LedgerTableName)"
)


def _aws_options(command: Any) -> Any:
    """--stack (default: samconfig.toml's stack_name), --profile, --region: the boto3 default chain otherwise."""
    from trainctl.target import default_stack_name

    command = click.option("--region", default=None, help="AWS region (default: your profile's)")(command)
    command = click.option("--profile", default=None, help="AWS named profile (default: the credential chain)")(command)
    return click.option(
        "--stack",
        "stack_name",
        default=default_stack_name(ROOT),
        show_default=True,
        help="the release-train CloudFormation stack",
    )(command)


def _answer(
    release_id: str,
    stage: str,
    approve: bool,
    by: str,
    reason: str,
    url: str | None,
    stack_name: str,
    profile: str | None,
    region: str | None,
) -> None:
    from trainctl.target import Approvals

    with _aws_errors_exit_3():
        session = _session(profile, region)
        target = url or _stack(session, stack_name).output("ApprovalsUrl")
        credentials = session.get_credentials()
        if credentials is None:
            console.print("[red]error:[/] no AWS credentials: configure a profile or pass --profile")
            sys.exit(3)
        region_name = Approvals.region_of(target, session.region_name or "us-east-1")
        answered = Approvals(target, credentials, region_name).answer(release_id, stage, approve, reason, by)
    body = answered.body
    if answered.status == 200:
        out.print(
            f"{escape(release_id)} {escape(stage)}: {escape(str(body.get('status')))} by "
            f"{escape(str(body.get('decided_by')))} ({escape(str(body.get('identity')))})"
        )
        return
    problems = body.get("problems") or []
    console.print(f"[red]refused ({answered.status}):[/] {escape(str(body.get('error', body)))}")
    for problem in problems if isinstance(problems, list) else []:
        console.print(f"  - {escape(str(problem))}")
    # 403: not an approver (the action failed); 404: no such approval; 400/409: invalid or too late.
    sys.exit({403: 1, 404: 3}.get(answered.status, 2 if answered.status in {400, 409} else 3))


_url_option = click.option(
    "--url", envvar="RELEASE_TRAIN_APPROVALS_URL", default=None, help="the ApprovalsUrl output (default: from --stack)"
)


@main.command()
@click.argument("release_id")
@click.option("--stage", required=True)
@click.option("--reason", default="approved", show_default=True)
@click.option("--by", default="", help="a display name, recorded beside the IAM identity AWS authenticated")
@_url_option
@_aws_options
def approve(
    release_id: str,
    stage: str,
    reason: str,
    by: str,
    url: str | None,
    stack_name: str,
    profile: str | None,
    region: str | None,
) -> None:
    """Approve a stage waiting for approval (you must be one of its approvers)."""
    _answer(release_id, stage, True, by, reason, url, stack_name, profile, region)


@main.command()
@click.argument("release_id")
@click.option("--stage", required=True)
@click.option("--reason", required=True, help="why (sent to everyone on the release)")
@click.option("--by", default="", help="a display name, recorded beside the IAM identity AWS authenticated")
@_url_option
@_aws_options
def reject(
    release_id: str,
    stage: str,
    reason: str,
    by: str,
    url: str | None,
    stack_name: str,
    profile: str | None,
    region: str | None,
) -> None:
    """Reject a stage waiting for approval: the release ends BLOCKED, nothing deployed to that stage."""
    _answer(release_id, stage, False, by, reason, url, stack_name, profile, region)


@main.command()
@table_option
@click.option("--fleet", "fleet_name", required=True)
@click.option("--scope", default="*", show_default=True, help="a service name, or * for the whole fleet")
@click.option("--reason", required=True, help="why (kept in the audit record, also when lifting)")
@click.option("--by", required=True, help="a display name, recorded beside your IAM identity")
@click.option("--remove", is_flag=True, help="lift the hold instead")
@click.option("--profile", default=None)
@click.option("--region", default=None)
def hold(
    table: str,
    fleet_name: str,
    scope: str,
    reason: str,
    by: str,
    remove: bool,
    profile: str | None,
    region: str | None,
) -> None:
    """Put (or lift) an operator hold: no wave starts and no stage is entered while it stands."""
    from release_train.adapters.clock import Clock
    from release_train.domain.release import Hold

    with _aws_errors_exit_3():
        session = _session(profile, region)
        identity = str(session.client("sts").get_caller_identity()["Arn"])
        ledger = _ledger(table, session)
        hold = Hold(scope, reason, by, identity)
        if remove:
            ledger.remove_hold(fleet_name, hold, Clock().now())
            out.print(f"hold on {escape(scope)} lifted by {escape(by)} ({escape(identity)})")
        else:
            ledger.put_hold(fleet_name, hold, Clock().now())
            out.print(f"hold on {escape(scope)} set by {escape(by)} ({escape(identity)}): {escape(reason)}")


@main.command()
@click.argument("execution_arn")
@click.option("--reason", required=True)
def cancel(execution_arn: str, reason: str) -> None:
    """Stop a running train (same as Stop in the console); the clean-up rule closes the release."""
    import boto3

    with _aws_errors_exit_3():
        boto3.client("stepfunctions").stop_execution(
            executionArn=execution_arn, error="OperatorCancelled", cause=reason
        )
    out.print(f"stop requested: {escape(execution_arn)}")


@main.command()
@table_option
@click.option("--fleet", "fleet_name", required=True)
@click.option("--limit", default=10, show_default=True)
def status(table: str, fleet_name: str, limit: int) -> None:
    """Recent releases of a fleet, newest first, and who holds the lock."""
    with _aws_errors_exit_3():
        ledger = _ledger(table)
        lock = ledger.lock(fleet_name)
        out.print(f"lock: {escape(lock.release_id + ' since ' + lock.acquired_at) if lock else 'free'}")
        listing = Table("release", "status", "created", "reason")
        for record in ledger.list_releases(fleet_name, limit):
            listing.add_row(
                escape(record.release_id), record.status.value, escape(record.created_at), escape(record.reason[:80])
            )
    out.print(listing)


@main.group()
def fleet() -> None:
    """Validate and publish fleet.yaml."""


@fleet.command("validate")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=ROOT / "fleet.yaml")
@click.option("--stack", "stack_name", default=None, help="also check the deployed stack's guardrails (needs AWS)")
@click.option("--profile", default=None)
@click.option("--region", default=None)
def fleet_validate(path: Path, stack_name: str | None, profile: str | None, region: str | None) -> None:
    """Check a fleet file with the rules PlanRelease applies; with --stack, against that stack's guardrails too."""
    from release_train.domain.fleet import parse_fleet
    from release_train.domain.guardrails import Guardrails

    with _bad_input_exits_2():
        parsed = parse_fleet(path.read_text(), str(path))
        if stack_name:
            with _aws_errors_exit_3():
                stack = _stack(_session(profile, region), stack_name)
            Guardrails.from_parameters(stack.parameters, stack.account).check(parsed, str(path))
    out.print(
        f"{escape(str(path))}: fleet {parsed.fleet}, {len(parsed.services)} services, waves {parsed.waves()}, "
        f"stages {escape(str([s.name for s in parsed.stages]))}"
    )
    if stack_name:
        out.print(f"guardrails of stack {escape(stack_name)}: met")
    else:
        console.print(
            "[yellow]guardrails not checked:[/] offline, the stack's parameters are unknown; pass --stack NAME "
            "(PlanRelease and `fleet push` always check them)"
        )


@fleet.command("push")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=ROOT / "fleet.yaml")
@_aws_options
def fleet_push(path: Path, stack_name: str, profile: str | None, region: str | None) -> None:
    """Validate against the stack's guardrails, then upload the fleet the next train will read."""
    from release_train.adapters.fleet_store import FleetStore
    from release_train.domain.fleet import parse_fleet
    from release_train.domain.guardrails import Guardrails

    text = path.read_text()
    with _bad_input_exits_2(), _aws_errors_exit_3():
        session = _session(profile, region)
        stack = _stack(session, stack_name)
        parsed = parse_fleet(text, str(path))
        Guardrails.from_parameters(stack.parameters, stack.account).check(parsed, str(path))
        bucket = stack.output("ConfigBucketName")
        version = FleetStore(session.client("s3"), bucket).push(text)
    out.print(f"pushed {escape(str(path))} to s3://{escape(bucket)}/fleet.yaml (version {version})")


if __name__ == "__main__":
    main()
