"""examples/company-service/template.yaml: valid SAM (sam validate --lint, cfn-lint), and the checks it publishes
are valid traffic-hook configuration for the functions it deploys."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

from release_train.domain.checks import CheckSuite, HookPhase, parse_check_suite
from tests.conftest import ROOT

SERVICE = ROOT / "examples" / "company-service"
TEMPLATE = SERVICE / "template.yaml"
SAM = ROOT / ".venv-sam" / "bin" / "sam"
CFN_LINT = ROOT / ".venv" / "bin" / "cfn-lint"


def _template() -> dict[str, Any]:
    loaded: dict[str, Any] = cfn_yaml.load(str(TEMPLATE))
    return loaded


def _resources(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in _template()["Resources"].items() if r["Type"] == kind}


def _published_suites() -> dict[str, CheckSuite]:
    """Each AWS::SSM::Parameter's value, with ${...} replaced by stand-ins, parsed the way the hooks parse it."""
    stand_ins = {"CompanyApi": "abc123", "AWS::Region": "us-east-1", "AWS::URLSuffix": "amazonaws.com", "Stage": "prod"}
    suites = {}
    for name, resource in _resources("AWS::SSM::Parameter").items():
        text = re.sub(r"\$\{([^}]+)\}", lambda m: stand_ins[m.group(1)], resource["Properties"]["Value"]["Fn::Sub"])
        suites[name] = parse_check_suite(text, name)
    return suites


@pytest.mark.slow
@pytest.mark.sam
@pytest.mark.skipif(not SAM.exists(), reason=f"aws-sam-cli not installed at {SAM}")
def test_given_the_example_template_when_sam_validates_with_lint_then_it_passes() -> None:
    result = subprocess.run(
        [str(SAM), "validate", "--lint", "--region", "us-east-1"],
        cwd=SERVICE,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_given_the_example_template_when_cfn_lint_runs_then_it_reports_nothing() -> None:
    result = subprocess.run([str(CFN_LINT), str(TEMPLATE)], capture_output=True, text=True, timeout=300, check=False)

    assert result.returncode == 0, result.stdout + result.stderr


def test_given_the_published_checks_when_parsed_like_the_hooks_do_then_every_function_has_pre_and_post_checks() -> None:
    suites = _published_suites()

    assert set(suites) == {"CreateCompanyChecks", "ReadCompanyChecks", "UpdateCompanyChecks", "DeleteCompanyChecks"}
    assert all(s.checks_for(HookPhase.PRE_TRAFFIC) and s.checks_for(HookPhase.POST_TRAFFIC) for s in suites.values())


def test_given_each_function_when_its_checks_parameter_is_named_then_it_is_where_the_hooks_look() -> None:
    # The hooks read <prefix>/<function name>; the function must also wait for its checks (DependsOn).
    for name, function in _resources("AWS::Serverless::Function").items():
        checks = _template()["Resources"][function["DependsOn"]]
        function_name = function["Properties"]["FunctionName"]["Fn::Sub"]

        assert checks["Properties"]["Name"]["Fn::Sub"] == "${ChecksParameterPrefix}/" + function_name, name


def test_given_each_function_when_deployed_then_it_uses_the_shared_hooks_and_its_version_scoped_alarms() -> None:
    for name, function in _resources("AWS::Serverless::Function").items():
        preference = function["Properties"]["DeploymentPreference"]
        alarms = [a["Ref"] for a in preference["Alarms"]]

        assert preference["Hooks"] == {
            "PreTraffic": {"Ref": "PreTrafficHook"},
            "PostTraffic": {"Ref": "PostTrafficHook"},
        }
        for alarm in alarms:
            dimensions = {d["Name"] for d in _template()["Resources"][alarm]["Properties"]["Dimensions"]}
            assert dimensions == {"FunctionName", "Resource", "ExecutedVersion"}, (name, alarm)


def test_given_the_example_buildspec_when_read_then_it_tests_before_it_deploys_per_stage() -> None:
    text = Path(SERVICE / "buildspec.yml").read_text()

    assert text.index("pytest tests") < text.index("sam build") < text.index('sam deploy --config-env "$STAGE"')
