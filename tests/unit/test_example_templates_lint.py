"""Every example service's template passes `sam validate --lint` and cfn-lint, as a team runs them before deploying it
(each service's own behaviour is tested beside it: test_example_service_template.py, test_orders_ecs_template.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

EXAMPLES = sorted(p.parent for p in (ROOT / "examples").glob("*/template.yaml"))
SAM = ROOT / ".venv-sam" / "bin" / "sam"
CFN_LINT = ROOT / ".venv" / "bin" / "cfn-lint"


def test_given_the_examples_folder_then_both_example_services_are_linted() -> None:
    assert [p.name for p in EXAMPLES] == ["company-service", "orders-ecs"]


@pytest.mark.slow
@pytest.mark.sam
@pytest.mark.skipif(not SAM.exists(), reason=f"aws-sam-cli not installed at {SAM}")
@pytest.mark.parametrize("service", EXAMPLES, ids=lambda p: p.name)
def test_given_an_example_template_when_sam_validates_with_lint_then_it_passes(service: Path) -> None:
    result = subprocess.run(
        [str(SAM), "validate", "--lint", "--region", "us-east-1"],
        cwd=service,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("service", EXAMPLES, ids=lambda p: p.name)
def test_given_an_example_template_when_cfn_lint_runs_then_it_reports_nothing(service: Path) -> None:
    template = service / "template.yaml"
    result = subprocess.run([str(CFN_LINT), str(template)], capture_output=True, text=True, timeout=300, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
