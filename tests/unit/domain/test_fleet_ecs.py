"""The fleet's ECS deploy (`deploy: {platform: ecs, ...}`): parsed beside Lambda deploys, names checked per stage,
and no function or alias for the train's alias journal."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from release_train.domain.errors import InvalidInput
from release_train.domain.fleet import Deploy, EcsDeploy, EcsSite, parse_fleet

ROOT = Path(__file__).resolve().parents[3]
HEAD = """fleet: shop
defaults: {approvers: ["arn:aws:iam::123456789012:role/ReleaseManager"]}
services:
  - name: orders
    source: {codecommit: orders}
    deploy: %s
"""


def _problems(deploy: str) -> list[str]:
    with pytest.raises(InvalidInput) as refused:
        parse_fleet(HEAD % deploy)
    return list(refused.value.problems)


def test_given_an_ecs_deploy_then_its_names_default_to_the_example_stack_and_it_has_no_function() -> None:
    fleet = parse_fleet(HEAD % "{platform: ecs, port: 8080}")
    service = fleet.services[0]
    assert isinstance(service.deploy, EcsDeploy) and service.lambda_deploy is None
    assert fleet.ecs_for(service, "prod") == EcsSite(
        cluster="svc-orders-prod",
        service="orders",
        container="orders",
        port=8080,
        application="svc-orders-prod",
        deployment_group="svc-orders-prod-orders",
    )
    assert fleet.functions_for(service, "prod") == []  # no alias to journal, nothing for RecordFailure to point back
    assert fleet.canary_stages(service) == ("prod",)  # the last stage, as for Lambda
    assert service.deploy.deployment_config == "CodeDeployDefault.ECSCanary10Percent5Minutes"


@pytest.mark.parametrize(
    "config",
    [
        "ECSAllAtOnce",
        "ECSCanary10Percent5Minutes",
        "ECSCanary10Percent15Minutes",
        "ECSLinear10PercentEvery1Minutes",
        "CodeDeployDefault.ECSLinear10PercentEvery3Minutes",
    ],
)
def test_every_predefined_ecs_configuration_is_accepted(config: str) -> None:
    fleet = parse_fleet(HEAD % f"{{platform: ecs, port: 8080, traffic: {config}}}")
    deploy = fleet.services[0].deploy
    assert isinstance(deploy, EcsDeploy)
    assert deploy.deployment_config == f"CodeDeployDefault.{config.removeprefix('CodeDeployDefault.')}"


@pytest.mark.parametrize(
    ("deploy", "problem"),
    [
        ("{platform: ecs, port: 8080, traffic: Canary10Percent5Minutes}", "services.0.deploy.traffic: must be one of"),
        ("{platform: ecs}", "services.0.deploy.port: Field required"),
        ("{platform: ecs, port: 70000}", "services.0.deploy.port: Input should be less than or equal to 65535"),
        ("{platform: ecs, port: 8080, functions: [a]}", "services.0.deploy.functions: Extra inputs are not permitted"),
        ("{platform: k8s, port: 8080}", "services.0.deploy: `platform` must be lambda"),
        ("{platform: ecs, port: 8080, cluster: 'my cluster'}", "services[0].deploy.cluster: 'my cluster' (staging)"),
        ("{platform: ecs, port: 8080, service: '{team}'}", "services[0].deploy.service: unknown placeholder {team}"),
        ("{platform: ecs, port: 8080, canary_stages: [qa]}", "services[0].deploy.canary_stages: unknown stages"),
        ("{functions: [f], traffic: ECSAllAtOnce}", "services.0.deploy.traffic: must be one of CodeDeploy's Lambda"),
    ],
)
def test_given_a_bad_ecs_deploy_then_the_error_names_the_field(deploy: str, problem: str) -> None:
    problems = _problems(deploy)
    assert any(p.startswith(problem) for p in problems), problems


def test_given_the_example_fleets_then_lambda_deploys_are_unchanged_and_the_mixed_fleet_has_one_ecs_service() -> None:
    lambda_fleet = parse_fleet((ROOT / "fleet.yaml").read_text())
    assert all(s.deploy is None or isinstance(s.deploy, Deploy) for s in lambda_fleet.services)
    raw = yaml.safe_load((ROOT / "fleet.yaml").read_text())
    assert all("platform" not in (s.get("deploy") or {}) for s in raw["services"])  # the file needs no new key
    mixed = parse_fleet((ROOT / "examples" / "fleets" / "mixed-ecs.yaml").read_text())
    kinds = {s.name: type(s.deploy).__name__ for s in mixed.services}
    assert kinds == {"company-service": "Deploy", "identity": "NoneType", "orders": "EcsDeploy"}
    # A dumped fleet (what the sandbox and `fleet push` upload) parses back to the same fleet.
    assert parse_fleet(yaml.safe_dump(mixed.model_dump(mode="json"))) == mixed
