"""trainctl: run a simulated train locally, or operate the deployed one (status, history, show, start, cancel, approve,
reject, hold, fleet). Output, exit codes and errors follow one convention: trainctl/convention.py."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.live import Live

from release_train.domain.errors import InvalidInput
from trainctl.convention import (
    AWS,
    FAILED,
    USAGE,
    CommandError,
    emit,
    err,
    fail,
    guarded,
    note,
    out,
    output_option,
    text,
)
from trainctl.resources import default_root

# The stack's files (template.yaml, the ASL, the functions, the example fleet): the checkout trainctl runs from,
# else the copy installed with it (trainctl/resources.py). Commands that run the stack call stack_root() for the
# one-line error when neither is complete; ROOT only feeds defaults, so importing trainctl never fails.
ROOT = default_root()
console = err


@contextlib.contextmanager
def _bad_input_exits_2() -> Iterator[None]:
    """Invalid input is the caller's to fix: say what and where on stderr, exit 2, no traceback."""
    try:
        yield
    except InvalidInput as exc:
        # One line (trainctl/convention.py): fail() escapes the [brackets] of field paths and patterns, which rich
        # would read as markup, and never inserts a line break inside a message a script may grep.
        fail(f"{exc.source} is invalid: " + "; ".join(exc.problems), USAGE)


@click.group()
@click.version_option(package_name="release-train")
def main() -> None:
    """Operate the release train."""


# --- simulate -----------------------------------------------------------------------------------------------------


def world_options(scenario_default: str) -> Callable[[Any], Any]:
    """--fleet, --scenario and --log of the commands that create the emulated world (simulate, sandbox serve)."""

    def add(command: Any) -> Any:
        command = click.option(
            "--log",
            "log_path",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="write the functions' structured logs here",
        )(command)
        command = click.option(
            "--scenario",
            "scenario_name",
            default=None,
            help="what the emulated world does: a scenario file, or the name of a shipped one (staging-build-fails); "
            f"default: {scenario_default}",
        )(command)
        return click.option(
            "--fleet",
            "fleet_name",
            default=None,
            help="fleet to release: a fleet file, or the name of a shipped one (three-accounts, mixed-ecs); "
            "default: the example fleet.yaml of the stack's files",
        )(command)

    return add


def world_files(fleet_name: str | None, scenario_name: str | None) -> tuple[Path, Path, Path | None]:
    """The stack's files, the fleet and the scenario file `world_options` name, found as `trainctl/resources.py` does
    (a checkout, else the installed package); exits 2/3 with one line when they are not there. Also quiets what moto
    and Powertools say about the sandbox itself (not the user's news)."""
    from trainctl import resources

    logging.getLogger("moto").setLevel(logging.CRITICAL)  # the interpreter logs every caught error at WARNING
    # moto warns about each template resource it skips, Powertools about in-process metric reuse.
    warnings.filterwarnings("ignore", module=r"moto\..*")
    warnings.filterwarnings("ignore", module=r"aws_lambda_powertools\..*")
    try:
        root = resources.stack_root()
        scenario_path = resources.scenario_path(scenario_name, root) if scenario_name else None
        fleet_path = resources.fleet_path(fleet_name, root) if fleet_name else root / "fleet.yaml"
    except CommandError as exc:
        fail(str(exc), exc.code)
    return root, fleet_path, scenario_path


@main.command()
@world_options("everything succeeds, prod approved")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object (for machines) instead of tables")
@output_option
@click.option(
    "--pace",
    type=click.FloatRange(min=1.0),
    default=None,
    help="virtual seconds per wall second, to watch a train unfold (default: as fast as the machine goes)",
)
def simulate(
    fleet_name: str | None,
    scenario_name: str | None,
    as_json: bool,
    output: str,
    pace: float | None,
    log_path: Path | None,
) -> None:
    """Run a whole release train locally on the embedded emulator (no AWS account needed)."""
    as_json = as_json or output == "json"
    from trainctl.live_view import LiveTrain, canaries_of, milestone
    from trainctl.sandbox import emulators
    from trainctl.sandbox.runner import simulate as run
    from trainctl.sandbox.scenario import Scenario, load_scenario

    root, fleet_path, scenario_path = world_files(fleet_name, scenario_name)
    with _bad_input_exits_2():
        scenario = (
            load_scenario(scenario_path)
            if scenario_path
            else Scenario(name="default", approvals={"prod": {"decision": "approve"}})
        )
        source = str(scenario_path) if scenario_path else "default scenario"

        def canaries() -> list[dict[str, Any]]:
            world = emulators.active()
            return canaries_of(list(world.codedeploy.deployments.values())) if world else []

        train = LiveTrain(canaries)
        if as_json:
            result = run(fleet_path, scenario, root, None, pace, log_path, source)
        elif console.is_terminal:
            # The screen re-reads the train (LiveTrain.__rich__) at each refresh: canary traffic moves between events.
            def fold(observed: Any) -> None:
                train(observed)

            with Live(train, console=console, refresh_per_second=8, transient=True):
                result = run(fleet_path, scenario, root, fold, pace, log_path, source)
        else:
            # A log (CI, a pipe): each milestone once, as it happens, on stderr; the summary goes to stdout.
            def log(observed: Any) -> None:
                for line in train(observed):
                    console.print(text(milestone(observed.virtual_time, line)), soft_wrap=True)

            result = run(fleet_path, scenario, root, log, pace, log_path, source)
    doc = result.to_json()
    doc["scenario"] = scenario.name
    if as_json:
        out.print_json(json.dumps(doc, default=str))
    else:
        _summary(doc)
    sys.exit(0 if result.status == "SUCCEEDED" else 1)


def _summary(doc: dict[str, Any]) -> None:
    """Tables in wave order (a large wave as its failures and counts), gates, canaries, costs; the reason last."""
    from trainctl.live_view import render_summary

    out.print(render_summary(doc), soft_wrap=True)


# --- operating the deployed train ---------------------------------------------------------------------------------
# Exit codes and output: trainctl/convention.py (0 ok, 1 failed, 2 usage/invalid input, 3 AWS/credentials/not found).


def _now() -> datetime:
    """The operator commands' clock (tests replace it)."""
    return datetime.now(UTC)


def _sleep(seconds: float) -> None:
    """The --watch pause (tests replace it)."""
    time.sleep(seconds)


def _session(profile: str | None, region: str | None) -> Any:
    import boto3

    return boto3.Session(profile_name=profile, region_name=region)


def _stack(session: Any, name: str) -> Any:
    from trainctl.target import describe_stack

    return describe_stack(session.client("cloudformation"), name)


def _aws_options(command: Any) -> Any:
    """--stack (default: samconfig.toml's stack_name), --profile, --region: the boto3 default chain otherwise."""
    from trainctl.target import default_stack_name

    command = click.option("--region", default=None, help="AWS region (default: your profile's)")(command)
    command = click.option("--profile", default=None, help="AWS named profile (default: the credential chain)")(command)
    return click.option(
        "--stack",
        "stack_name",
        envvar="RELEASE_TRAIN_STACK",
        default=default_stack_name(ROOT),
        show_default=True,
        help="the release-train CloudFormation stack",
    )(command)


@dataclass(frozen=True)
class Where:
    """What a ledger command acts on, as the options named it: resolved to a Target inside the command's `guarded()`,
    so a bad profile or region is a one-line error, not a traceback."""

    stack_name: str
    profile: str | None
    region: str | None
    table: str | None
    fleet: str | None

    def target(self) -> Any:
        from trainctl.target import Target

        return Target(_session(self.profile, self.region), self.stack_name, self.table, self.fleet)


def _target_options(command: Any) -> Any:
    """The stack's options plus overrides of what its outputs say: --table (LedgerTableName) and --fleet (the fleet
    file in the stack's config bucket names it); the command receives them as one `where: Where`."""

    @functools.wraps(command)
    def with_where(
        *args: Any,
        stack_name: str,
        profile: str | None,
        region: str | None,
        table: str | None,
        fleet_name: str | None,
        **kwargs: Any,
    ) -> Any:
        return command(*args, where=Where(stack_name, profile, region, table, fleet_name), **kwargs)

    wrapped: Any = with_where
    wrapped = click.option(
        "--fleet", "fleet_name", default=None, help="the fleet (default: the one in the stack's config bucket)"
    )(wrapped)
    wrapped = click.option(
        "--table", envvar="RELEASE_TRAIN_TABLE", default=None, help="the ledger table (default: the stack's output)"
    )(wrapped)
    return _aws_options(wrapped)


# --- status, history, show -----------------------------------------------------------------------------------------


def _schedule(target: Any) -> Any:
    """A function of `now` giving the next-train document. With --table and --fleet the stack is optional: when it
    cannot be read, the schedule is reported unknown (why, in `note`) rather than failing the whole status."""
    from trainctl.schedule import next_train
    from trainctl.target import TargetError

    try:
        parameters = target.stack.parameters
    except TargetError as exc:
        if not (target._table and target._fleet):
            raise
        reason = str(exc)
        return lambda now: {"expression": None, "timezone": None, "state": None, "next_fire": None, "note": reason}
    return lambda now: next_train(parameters, now).to_json()


@main.command()
@_target_options
@click.option("--watch", is_flag=True, help="refresh until the running release ends (exit 1 unless it SUCCEEDED)")
@click.option("--interval", type=click.FloatRange(min=1.0), default=10.0, show_default=True, help="seconds")
@output_option
def status(
    where: Where,
    watch: bool,
    interval: float,
    output: str,
) -> None:
    """The running train (stage, wave, builds per wave, approval and who may answer, bake), what is live where, and
    when the next train leaves."""
    from trainctl.views import render_status, status_doc
    from trainctl.watch import watch_release

    with guarded():
        target = where.target()
        schedule = _schedule(target)
        ledger, fleet_ = target.ledger, target.fleet

        def read() -> dict[str, Any]:
            now = _now()
            return status_doc(ledger, fleet_, now, schedule(now))

        if not watch:
            emit(output, read(), render_status)
            return

        def show(doc: dict[str, Any]) -> None:
            if output == "json":
                return  # one document: the last one
            if out.is_terminal:
                out.clear()
            else:
                out.rule(text(doc["now"]))
            render_status(doc)

        watched = watch_release(read, show, _sleep, interval)
        if output == "json":
            emit(output, watched.last, render_status)
        if watched.release_id is None:
            note("no train is running: nothing to watch")
            return
        record = ledger.release(watched.release_id)
        final = record.status.value if record else "UNKNOWN"
        if final != "SUCCEEDED":
            fail(f"release {watched.release_id} ended {final}: {record.reason if record else '-'}", FAILED)


@main.command()
@_target_options
@click.option("-n", "--limit", type=click.IntRange(min=1, max=1000), default=10, show_default=True)
@output_option
def history(
    where: Where,
    limit: int,
    output: str,
) -> None:
    """The fleet's releases, newest first: status, reason, duration, who started them."""
    from trainctl.views import history_doc, render_history

    with guarded():
        target = where.target()
        doc = history_doc(target.ledger, target.fleet, limit, _now())
    emit(output, doc, render_history)


@main.command()
@click.argument("release_id")
@_target_options
@output_option
def show(
    release_id: str,
    where: Where,
    output: str,
) -> None:
    """One release: manifest, waves, builds, approvals with identities, gates and verdicts, aliases, events."""
    from trainctl.views import find_release, render_show, show_doc

    with guarded():
        target = where.target()
        record = find_release(target.ledger, release_id, target.table_name)
        doc = show_doc(target.ledger, record, _now())
    emit(output, doc, render_show)


# --- cancel, start -------------------------------------------------------------------------------------------------

# StopExecution: "error" at most 256 characters, "cause" at most 32,768 (Step Functions API reference).
STOP_ERROR = "OperatorCancelled"
CAUSE_MAX = 32_768


def _states_client(session: Any, execution_arn: str) -> Any:
    """Step Functions in the execution's own region (an ARN names it: arn:aws:states:<region>:...)."""
    parts = execution_arn.split(":")
    region = parts[3] if len(parts) > 3 and parts[3] else None
    return session.client("stepfunctions", region_name=region) if region else session.client("stepfunctions")


@main.command()
@click.argument("release")
@click.option("--reason", required=True, help="why (becomes the release's reason: 'execution ABORTED: <reason> …')")
@_target_options
@output_option
def cancel(
    release: str,
    reason: str,
    where: Where,
    output: str,
) -> None:
    """Stop a running train by release id (or execution ARN): the same as Stop in the console; the clean-up rule stops
    its builds and deployments, closes the release CANCELLED and frees the lock."""
    if not reason.strip():
        fail("--reason is empty: say why the train is cancelled (everyone on the release reads it)", USAGE)
    with guarded():
        target = where.target()
        identity = target.identity()
        cause = f"{reason.strip()} (cancelled by {identity})"
        if len(cause) > CAUSE_MAX:
            raise CommandError(
                f"--reason is {len(reason):,} characters; StopExecution keeps a cause of at most {CAUSE_MAX:,} "
                "including who cancelled: shorten it",
                USAGE,
            )
        release_id: str | None = None
        if release.startswith("arn:"):
            execution_arn = release
        else:
            from trainctl.views import find_release

            record = find_release(target.ledger, release, target.table_name)
            release_id, execution_arn = record.release_id, record.execution_arn
        sfn = _states_client(target.session, execution_arn)
        running = sfn.describe_execution(executionArn=execution_arn)["status"]
        if running != "RUNNING":
            raise CommandError(
                f"{release_id or execution_arn}: its execution is already {running}; nothing to stop "
                "(trainctl show RELEASE says how it ended)",
                FAILED,
            )
        sfn.stop_execution(executionArn=execution_arn, error=STOP_ERROR, cause=cause)
    doc = {"release_id": release_id, "execution_arn": execution_arn, "error": STOP_ERROR, "cause": cause}
    emit(
        output,
        doc,
        lambda d: out.print(
            text(f"stop requested: {d['release_id'] or ''} {d['execution_arn']} — the clean-up closes the release"),
            soft_wrap=True,
        ),
    )


@main.command()
@click.option("--services", default=None, help="comma-separated service names to release (even if unchanged)")
@click.option("--all", "all_services", is_flag=True, help="release every service of the fleet")
@click.option("--reason", required=True, help="why (recorded with your IAM identity as requested_by)")
@click.option("--release-id", default=None, help="name the release (default: <ISO week>-manual-<execution suffix>)")
@click.option(
    "--supersede",
    is_flag=True,
    help="replace a running train that waits only for an approval (its approval SUPERSEDED, it ends BLOCKED)",
)
@click.option(
    "--skip-bake",
    is_flag=True,
    help="break glass: no stage bakes (approvals still apply); only where the stack sets AllowBreakGlass=true, "
    "through its audited BreakGlass URL, with your IAM identity and --reason on the record",
)
@_target_options
@output_option
def start(
    services: str | None,
    all_services: bool,
    reason: str,
    release_id: str | None,
    supersede: bool,
    skip_bake: bool,
    where: Where,
    output: str,
) -> None:
    """Start a manual train on the stack's state machine alias (the schedule's path): by default the changed
    services. Refused while a train runs; a train waiting only for an approval is replaced with --supersede."""
    from uuid import uuid4

    from release_train.domain.release import parse_execution_input, release_id_for

    if services is not None and all_services:
        fail("--services and --all exclude each other: name services, or release all of them", USAGE)
    if not reason.strip() or len(reason) > 1000:
        fail("--reason: say why in 1 to 1,000 characters (it is recorded on the release)", USAGE)
    names = [n.strip() for n in (services or "").split(",") if n.strip()]
    if services is not None and not names:
        fail("--services names no service: e.g. --services orders,payments", USAGE)
    with guarded():
        target = where.target()
        known = [str(s.get("name")) for s in target.fleet_doc().get("services") or [] if isinstance(s, dict)]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise CommandError(f"--services: not in fleet {target.fleet}: {', '.join(unknown)}", USAGE)
        identity = target.identity()
        execution_name = f"manual-{uuid4().hex[:12]}"
        request: dict[str, Any] = {
            "trigger": "manual",
            "services": names or ("all" if all_services else "changed"),
            "requested_by": f"{identity}: {reason.strip()}",
        }
        if release_id:
            request["release_id"] = release_id
        parsed = parse_execution_input(request)  # the input PlanRelease will check: invalid -> exit 2 here
        request["release_id"] = release_id_for(parsed, execution_name, _now())
        ledger = target.ledger
        if ledger.release(request["release_id"]) is not None:
            raise CommandError(f"release {request['release_id']} already exists: pick another --release-id", FAILED)
        superseding = _may_start(ledger, target.fleet, supersede)
        alias = target.stack.output("StateMachineAliasArn")
        if skip_bake:
            started = _break_glass(target, request, reason.strip(), release_id)
            request["release_id"] = started["release_id"]
        else:
            started = target.session.client("stepfunctions").start_execution(
                stateMachineArn=alias, name=execution_name, input=json.dumps(request)
            )
    doc = {
        "release_id": request["release_id"],
        "execution_arn": started["executionArn"] if not skip_bake else started["execution_arn"],
        "state_machine": alias,
        "input": request,
        "supersedes": superseding,
        "break_glass": started.get("grant") if skip_bake else None,
    }

    def render(d: dict[str, Any]) -> None:
        out.print(text(f"started {d['release_id']}: {d['execution_arn']}"), soft_wrap=True)
        if d["break_glass"]:
            grant = d["break_glass"]
            out.print(
                text(f"BREAK GLASS: no bake; audited as {grant['identity']}: {grant['reason']}", "bold red"),
                soft_wrap=True,
            )
        if d["supersedes"]:
            out.print(text(f"superseding {d['supersedes']} (it waits for an approval)"), soft_wrap=True)
        out.print(text("follow it: trainctl status --watch"))

    emit(output, doc, render)


def _break_glass(target: Any, request: dict[str, Any], reason: str, release_id: str | None) -> dict[str, Any]:
    """`start --skip-bake`: the BreakGlass function starts the train (it signs the grant PlanRelease checks); it
    exists only where the platform team set AllowBreakGlass=true."""
    from trainctl.target import FunctionUrl

    url = target.stack.outputs.get("BreakGlassUrl")
    if not url:
        raise CommandError(
            f"stack {target.stack_name} does not allow break glass (its AllowBreakGlass parameter is false): "
            "start without --skip-bake, or ask the platform team",
            FAILED,
        )
    if len(reason) < 10:
        raise CommandError("--reason: break glass needs at least 10 characters saying why (it is audited)", USAGE)
    body: dict[str, Any] = {"action": "start", "skip": ["bake"], "reason": reason, "services": request["services"]}
    if release_id:
        body["release_id"] = release_id
    answered = FunctionUrl.signed_by(url, target.session).post(body, "break-glass")
    if answered.status != 200:
        # 403: Lambda refused the caller (no BreakGlassPolicy) or the function did; 400: invalid; else AWS.
        code = {403: FAILED, 400: USAGE}.get(answered.status, AWS)
        problems = answered.body.get("problems") or []
        detail = f": {'; '.join(str(p) for p in problems)}" if problems else ""
        raise CommandError(f"break glass refused ({answered.status}): {answered.body.get('error')}{detail}", code)
    return answered.body


def _may_start(ledger: Any, fleet: str, supersede: bool) -> str | None:
    """Refuse (exit 1, naming it) while a release runs; with --supersede, allow only over one waiting for an approval.
    PlanRelease decides for real (docs/adr/0004): it supersedes a holder that waits only for an approval and refuses
    any other (ReleaseInProgress). Returns the release being superseded, if any."""
    lock = ledger.lock(fleet)
    if lock is None:
        return None
    record = ledger.release(lock.release_id)
    if record is None or record.status.terminal:
        return None  # a lock whose release ended: PlanRelease reclaims it once the execution has ended
    pending = [a.stage for a in ledger.pending_approvals(lock.release_id)]
    if pending and supersede:
        return str(lock.release_id)
    if pending:
        raise CommandError(
            f"release {lock.release_id} is running (waiting for the {', '.join(pending)} approval since "
            f"{lock.acquired_at}): start refused; pass --supersede to replace it (its approval is marked SUPERSEDED, "
            "it ends BLOCKED and its execution is stopped), or answer its approval",
            FAILED,
        )
    raise CommandError(
        f"release {lock.release_id} is running (since {lock.acquired_at}, not waiting for an approval): start "
        f"refused{' even with --supersede, which replaces only a train waiting for an approval' if supersede else ''}; "
        f"wait for it (trainctl status --watch) or cancel it (trainctl cancel {lock.release_id} --reason …)",
        FAILED,
    )


# --- approve, reject, hold -----------------------------------------------------------------------------------------


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
    output: str,
) -> None:
    from trainctl.target import Approvals

    with guarded():
        session = _session(profile, region)
        target = url or _stack(session, stack_name).output("ApprovalsUrl")
        answered = Approvals.signed_by(target, session).answer(release_id, stage, approve, reason, by)
    body = answered.body
    if answered.status == 200:
        emit(
            output,
            {"http_status": answered.status, **body},
            lambda b: out.print(
                text(f"{release_id} {stage}: {b.get('status')} by {b.get('decided_by')} ({b.get('identity')})"),
                soft_wrap=True,
            ),
        )
        return
    # 403: not an approver (the action failed); 404: no such approval; 400/409: invalid or too late.
    code = {403: FAILED, 404: AWS}.get(answered.status, USAGE if answered.status in {400, 409} else AWS)
    problems = body.get("problems") or []
    if output == "json":
        click.echo(json.dumps({"http_status": answered.status, **body}, indent=2, default=str))
    detail = "; ".join(str(p) for p in problems) if isinstance(problems, list) and problems else ""
    fail(f"refused ({answered.status}): {body.get('error', body)}" + (f": {detail}" if detail else ""), code)


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
@output_option
def approve(
    release_id: str,
    stage: str,
    reason: str,
    by: str,
    url: str | None,
    stack_name: str,
    profile: str | None,
    region: str | None,
    output: str,
) -> None:
    """Approve a stage waiting for approval (you must be one of its approvers)."""
    _answer(release_id, stage, True, by, reason, url, stack_name, profile, region, output)


@main.command()
@click.argument("release_id")
@click.option("--stage", required=True)
@click.option("--reason", required=True, help="why (sent to everyone on the release)")
@click.option("--by", default="", help="a display name, recorded beside the IAM identity AWS authenticated")
@_url_option
@_aws_options
@output_option
def reject(
    release_id: str,
    stage: str,
    reason: str,
    by: str,
    url: str | None,
    stack_name: str,
    profile: str | None,
    region: str | None,
    output: str,
) -> None:
    """Reject a stage waiting for approval: the release ends BLOCKED, nothing deployed to that stage."""
    _answer(release_id, stage, False, by, reason, url, stack_name, profile, region, output)


def _hold_options(command: Any) -> Any:
    command = output_option(_target_options(command))
    command = click.option("--by", required=True, help="a display name, recorded beside your IAM identity")(command)
    command = click.option("--reason", required=True, help="why (kept in the audit record, also when lifting)")(command)
    return click.option("--scope", default="*", show_default=True, help="a service name, or * for the whole fleet")(
        command
    )


@main.command()
@_hold_options
@click.option("--remove", is_flag=True, help="lift the hold instead (as `trainctl unhold`)")
def hold(
    scope: str,
    reason: str,
    by: str,
    remove: bool,
    where: Where,
    output: str,
) -> None:
    """Put (or lift) an operator hold: no wave starts and no stage is entered while it stands."""
    _hold(scope, reason, by, remove, where, output)


@main.command()
@_hold_options
def unhold(scope: str, reason: str, by: str, where: Where, output: str) -> None:
    """Lift an operator hold (as `hold --remove`): audited with your IAM identity, --by and --reason."""
    _hold(scope, reason, by, True, where, output)


def _hold(scope: str, reason: str, by: str, remove: bool, where: Where, output: str) -> None:
    from release_train.adapters.clock import Clock
    from release_train.domain.release import Hold

    with guarded():
        target = where.target()
        identity = target.identity()
        ledger, fleet_ = target.ledger, target.fleet
        held = Hold(scope, reason, by, identity)
        if remove:
            ledger.remove_hold(fleet_, held, Clock().now())
        else:
            ledger.put_hold(fleet_, held, Clock().now())
    doc = {
        "fleet": fleet_,
        "scope": scope,
        "action": "hold_removed" if remove else "hold_put",
        "reason": reason,
        "by": by,
        "identity": identity,
    }

    def render(d: dict[str, Any]) -> None:
        if remove:
            out.print(text(f"hold on {scope} lifted by {by} ({identity})"), soft_wrap=True)
        else:
            out.print(text(f"hold on {scope} set by {by} ({identity}): {reason}"), soft_wrap=True)

    emit(output, doc, render)


# --- the fleet file ------------------------------------------------------------------------------------------------


@main.group()
def fleet() -> None:
    """Validate and publish fleet.yaml."""


@fleet.command("validate")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=ROOT / "fleet.yaml")
@click.option("--stack", "stack_name", default=None, help="also check the deployed stack's guardrails (needs AWS)")
@click.option("--profile", default=None)
@click.option("--region", default=None)
@output_option
def fleet_validate(path: Path, stack_name: str | None, profile: str | None, region: str | None, output: str) -> None:
    """Check a fleet file with the rules PlanRelease applies; with --stack, against that stack's guardrails too."""
    from release_train.domain.fleet import parse_fleet
    from release_train.domain.guardrails import Guardrails

    with guarded():
        parsed = parse_fleet(path.read_text(), str(path))
        if stack_name:
            stack = _stack(_session(profile, region), stack_name)
            Guardrails.from_parameters(stack.parameters, stack.account).check(parsed, str(path))
    doc = {
        "path": str(path),
        "fleet": parsed.fleet,
        "services": len(parsed.services),
        "waves": parsed.waves(),
        "stages": [s.name for s in parsed.stages],
        "guardrails": f"met (stack {stack_name})" if stack_name else "not checked",
    }

    def render(d: dict[str, Any]) -> None:
        out.print(
            text(
                f"{path}: fleet {parsed.fleet}, {len(parsed.services)} services, waves {parsed.waves()}, "
                f"stages {[s.name for s in parsed.stages]}"
            ),
            soft_wrap=True,
        )
        if stack_name:
            out.print(text(f"guardrails of stack {stack_name}: met"))
        else:
            note(
                "guardrails not checked: offline, the stack's parameters are unknown; pass --stack NAME "
                "(PlanRelease and `fleet push` always check them)"
            )

    emit(output, doc, render)


@fleet.command("push")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=ROOT / "fleet.yaml")
@_aws_options
@output_option
def fleet_push(path: Path, stack_name: str, profile: str | None, region: str | None, output: str) -> None:
    """Validate against the stack's guardrails, then upload the fleet the next train will read."""
    from release_train.adapters.fleet_store import FLEET_KEY, FleetStore
    from release_train.domain.fleet import parse_fleet
    from release_train.domain.guardrails import Guardrails

    text_ = path.read_text()
    with guarded():
        session = _session(profile, region)
        stack = _stack(session, stack_name)
        parsed = parse_fleet(text_, str(path))
        Guardrails.from_parameters(stack.parameters, stack.account).check(parsed, str(path))
        bucket = stack.output("ConfigBucketName")
        version = FleetStore(session.client("s3"), bucket).push(text_)
    doc = {"path": str(path), "fleet": parsed.fleet, "bucket": bucket, "key": FLEET_KEY, "version": version}
    emit(
        output,
        doc,
        lambda d: out.print(text(f"pushed {path} to s3://{bucket}/{FLEET_KEY} (version {version})"), soft_wrap=True),
    )


# --- commands kept in their own modules: each registers itself on `main` when imported (after everything above) ---
# Add a module to this import, in alphabetical order.
from trainctl import plan, projects, report, rollback, serve  # noqa: E402, F401

if __name__ == "__main__":
    main()
