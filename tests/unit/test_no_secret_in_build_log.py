"""No secret in a build log: the example service's buildspec (pre_build and build, as CodeBuild runs them) and the
preview workflow's deploy and comment steps, run for real in a shell, with each stage's webhook secret configured.

What stands in: `sam` prints what `sam deploy` prints about its inputs (the stack and the parameter overrides, from
the command line or else the config-env; samcli/commands/deploy/utils.py `print_deploy_args`), `python -m pytest`
prints a summary, and `aws` answers `secretsmanager get-secret-value` with the configured secret, so a command that
fetched the secret would print it. Every other command (the STAGE guard, the config-env check, the overrides read
from samconfig.toml, scripts/preview/preview.py) is the real one. The log must name each secret (the overrides were
printed) and hold none of their values nor anything the repository-wide scan (test_workflows.py) takes for a secret;
control runs with the value planted in samconfig.toml or fetched by a command show that the check does find it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.unit.test_workflows import _secrets_in

SERVICE = ROOT / "examples" / "company-service"
PREVIEW_WORKFLOW = ROOT / ".github" / "workflows" / "service-preview.yml"
COMMIT = "405844d94a1ab226a96a9708a74107ba43bd23fa"

SAM_STAND_IN = """
import json, sys, tomllib
args = sys.argv[1:]
print("sam", *args)
if args[:1] == ["deploy"]:
    def values(flag):
        if flag not in args:
            return []
        rest = args[args.index(flag) + 1:]
        return rest[: next((i for i, a in enumerate(rest) if a.startswith("--")), len(rest))]
    env = (values("--config-env") or ["default"])[0]
    config = tomllib.load(open("samconfig.toml", "rb"))
    deploy = config.get(env, {}).get("deploy", {}).get("parameters", {})
    # A command-line --parameter-overrides replaces the config-env's (it does not merge).
    overrides = values("--parameter-overrides") or deploy.get("parameter_overrides", "").split()
    stack = (values("--stack-name") or [deploy.get("stack_name", "")])[0]
    print("\\tDeploying with following values\\n\\t===============================")
    print(f"\\tStack name                   : {stack}")
    print(f"\\tParameter overrides          : {json.dumps(dict(o.split('=', 1) for o in overrides))}")
"""
PYTHON_STAND_IN = """
import os, sys
if sys.argv[1:3] == ["-m", "pytest"]:
    print("20 passed in 1.00s")
    sys.exit(0)
os.execv({python!r}, [{python!r}, *sys.argv[1:]])
"""
AWS_STAND_IN = """
import json, os, sys
args = sys.argv[1:]
assert args[:2] == ["secretsmanager", "get-secret-value"], args
print(json.load(open(os.environ["CONFIGURED_SECRETS"]))[args[args.index("--secret-id") + 1]])
"""


def _executable(path: Path, body: str) -> None:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _overrides(service: Path, env: str) -> dict[str, str]:
    config = tomllib.loads((service / "samconfig.toml").read_text())
    text = config[env]["deploy"]["parameters"]["parameter_overrides"]
    return dict(word.split("=", 1) for word in text.split())


@pytest.fixture
def service(tmp_path: Path) -> Path:
    """A copy of the example service (the control runs edit it), its own stand-ins on PATH."""
    copy = tmp_path / "company-service"
    shutil.copytree(SERVICE, copy, ignore=shutil.ignore_patterns(".aws-sam", "__pycache__"))
    return copy


@pytest.fixture
def secrets(tmp_path: Path) -> dict[str, str]:
    """Each config-env's webhook secret, configured (name -> SecretString) where the `aws` stand-in reads it."""
    configured = {}
    for env in ("default", "staging", "prod", "preview"):
        name = _overrides(SERVICE, env)["WebhookSecretName"]
        configured[name] = json.dumps(
            {
                "url": f"https://hooks.billing.example/{env}/XyZs3cretWebh00kPath",
                "signing_key": f"Sup3rS3cret-{env}-" * 3,
            }
        )
    (tmp_path / "secrets.json").write_text(json.dumps(configured))
    return configured


def _run(script: str, cwd: Path, env: dict[str, str]) -> str:
    """`script` in bash with the stand-ins first on PATH; stdout and stderr together, as a build log has them."""
    bin_dir = cwd.parent / "bin"
    bin_dir.mkdir(exist_ok=True)
    _executable(bin_dir / "sam", SAM_STAND_IN)
    _executable(bin_dir / "python", PYTHON_STAND_IN.format(python=sys.executable))
    _executable(bin_dir / "aws", AWS_STAND_IN)
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "HOME": str(cwd.parent),
            "CONFIGURED_SECRETS": str(cwd.parent / "secrets.json"),
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    return result.stdout


def _buildspec_log(service: Path, stage: str) -> str:
    """The buildspec's pre_build and build commands in one shell (buildspec 0.2 keeps one shell across commands and
    phases), each announced as CodeBuild's log does. install is skipped: it only pip-installs tools."""
    spec = yaml.safe_load((service / "buildspec.yml").read_text())
    lines = ["set -e"]
    for phase in ("pre_build", "build"):
        for command in spec["phases"][phase]["commands"]:
            lines += [f"echo {shlex.quote(f'[Container] Running command {command}')}", command]
    return _run(
        "\n".join(lines),
        service,
        {"STAGE": stage, "RELEASE_ID": "2026-W48", "CODEBUILD_RESOLVED_SOURCE_VERSION": COMMIT},
    )


def _preview_log(service: Path) -> str:
    """The preview workflow's deploy job: name the stack, deploy, write the comment; each step's own environment."""
    steps = {step.get("name"): step for step in yaml.safe_load(PREVIEW_WORKFLOW.read_text())["jobs"]["deploy"]["steps"]}
    common = {
        "SERVICE": "svc-company",
        "PR": "42",
        "AWS_REGION": "us-east-1",
        "PREVIEW": str(ROOT / "scripts" / "preview" / "preview.py"),
        "GITHUB_OUTPUT": str(service.parent / "github_output"),
        "RUNNER_TEMP": str(service.parent),
    }
    inputs = {
        "STACK": "svc-company-pr-42",
        "CONFIG_ENV": "preview",
        "TEMPLATE": "template.yaml",
        "COMMIT": COMMIT,
        "MAX_LENGTH": "57",
        "STATUS": "success",
        "URL": "https://abc123.execute-api.us-east-1.amazonaws.com/preview",
        "RUN_URL": "https://github.com/acme/company/actions/runs/1",
    }
    log = []
    for name in ("Name the stack", "sam build", "sam deploy", "Write the PR comment"):
        step_env = {k: inputs[k] for k in steps[name].get("env", {})}
        log.append(_run(str(steps[name]["run"]), service, common | step_env))
    return "\n".join([*log, (service.parent / "comment.md").read_text()])


def _assert_clean(log: str, secrets: dict[str, str]) -> None:
    for name, value in secrets.items():
        stored = json.loads(value)
        for leaked in (value, stored["signing_key"], stored["url"], "XyZs3cretWebh00kPath", "Sup3rS3cret"):
            assert leaked not in log, f"{name}: {leaked!r} is in the build log"
    assert _secrets_in(log) == []


@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_given_a_stage_with_its_secret_when_the_buildspec_runs_then_the_log_names_the_secret_and_holds_no_value(
    service: Path, secrets: dict[str, str], stage: str
) -> None:
    log = _buildspec_log(service, stage)

    name = f"company-service/{stage}/webhook"
    assert name in secrets
    # The deploy printed its overrides (the config-env's, the release and the commit): the secret by name only.
    [printed] = re.findall(r"Parameter overrides\s+: (\{.*\})", log)
    overrides: dict[str, Any] = json.loads(printed)
    assert overrides["WebhookSecretName"] == name
    assert (overrides["Stage"], overrides["ReleaseId"], overrides["CommitSha"]) == (stage, "2026-W48", COMMIT)
    assert "[Container] Running command sam deploy" in log
    _assert_clean(log, secrets)


def test_given_a_pull_request_when_the_preview_workflow_deploys_then_the_log_names_the_secret_and_holds_no_value(
    service: Path, secrets: dict[str, str]
) -> None:
    log = _preview_log(service)

    [printed] = re.findall(r"Parameter overrides\s+: (\{.*\})", log)
    assert json.loads(printed)["WebhookSecretName"] == "company-service/preview/webhook"
    assert "Stack name                   : svc-company-pr-42" in log
    assert "### Preview of `svc-company`: Deployed" in log
    _assert_clean(log, secrets)


# --- controls: the check finds a secret that does reach the log ------------------------------------------------------


def test_given_the_value_planted_in_samconfig_when_the_buildspec_runs_then_the_check_finds_it(
    service: Path, secrets: dict[str, str]
) -> None:
    key = json.loads(secrets["company-service/prod/webhook"])["signing_key"]
    samconfig = service / "samconfig.toml"
    text = samconfig.read_text()
    samconfig.write_text(text.replace("WebhookSecretName=company-service/prod/webhook", f"WebhookSigningKey={key}"))

    log = _buildspec_log(service, "prod")

    with pytest.raises(AssertionError, match="is in the build log"):
        _assert_clean(log, secrets)


def test_given_a_command_that_fetches_the_secret_when_the_buildspec_runs_then_the_check_finds_it(
    service: Path, secrets: dict[str, str]
) -> None:
    buildspec = service / "buildspec.yml"
    spec = yaml.safe_load(buildspec.read_text())
    spec["phases"]["build"]["commands"].insert(
        0, 'aws secretsmanager get-secret-value --secret-id "company-service/$STAGE/webhook" --query SecretString'
    )
    buildspec.write_text(yaml.safe_dump(spec))

    log = _buildspec_log(service, "prod")

    with pytest.raises(AssertionError, match="is in the build log"):
        _assert_clean(log, secrets)
