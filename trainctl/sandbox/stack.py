"""Build the orchestrator stack inside moto from `template.yaml`, so the sandbox runs what would be deployed.

SAM -> CloudFormation with aws-sam-translator (offline), then moto's CloudFormation creates the resources. Function
code never leaves the repository: each function's `CodeUri` folder is remembered and its handler is imported
in-process (see `lambda_runtime`). The state machine is created from the ASL file after substituting
`DefinitionSubstitutions` with the stack's physical ARNs — exactly what CloudFormation does on AWS.
"""

from __future__ import annotations

import io
import json
import logging
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from trainctl.sandbox.accounts import ACCOUNT
from trainctl.sandbox.lambda_runtime import FunctionSpec, registry

ARTIFACTS = "release-train-sandbox-artifacts"
# SAM's translator counts features it saw and warns, when it is garbage-collected, that nobody published the counts
# (to CloudWatch, which the sandbox never reaches): noise on the sandbox's stderr.
logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)
# Types moto's CloudFormation cannot create; the sandbox reads what it needs of them from the template instead.
_UNSUPPORTED = {
    "AWS::Scheduler::Schedule",
    "AWS::Lambda::Url",  # moto's CloudFormation cannot make one: created through CreateFunctionUrlConfig below
    "AWS::CloudWatch::Alarm",
    "AWS::S3::BucketPolicy",
    "AWS::SQS::QueuePolicy",
    "AWS::Lambda::Permission",
    "AWS::SNS::Subscription",
    "AWS::Lambda::EventInvokeConfig",
    # Versions and aliases (AutoPublishAlias): created through the APIs below, as CloudFormation would.
    "AWS::Lambda::Version",
    "AWS::Lambda::Alias",
    "AWS::StepFunctions::StateMachineVersion",
    "AWS::StepFunctions::StateMachineAlias",
}
_PLACEHOLDER_ASL = {"StartAt": "Placeholder", "States": {"Placeholder": {"Type": "Pass", "End": True}}}


@dataclass
class Stack:
    name: str
    root: Path
    resources: dict[str, tuple[str, str]]  # logical id -> (type, physical id)
    state_machine_arn: str
    schedule_input: dict[str, Any]
    schedule_expression: str
    cleanup_rule: dict[str, Any]  # the EventBridge pattern that triggers the clean-up, and its target function
    state_machine_alias_arn: str = ""  # what the schedule starts (AutoPublishAlias: live)
    function_versions: dict[str, str] = field(default_factory=dict)  # function logical id -> published version ARN
    function_urls: dict[str, str] = field(default_factory=dict)  # function URL logical id -> its function's logical id
    machines: dict[str, Machine] = field(default_factory=dict)  # every state machine of the stack, by logical id
    main_machine: str = ""  # the one the schedule starts
    outputs: dict[str, str] = field(default_factory=dict)

    def physical(self, logical_id: str) -> str:
        return self.resources[logical_id][1]

    @property
    def asl_paths(self) -> list[Path]:
        return [m.asl_path for m in self.machines.values()]


@dataclass
class Machine:
    """A state machine as the sandbox created it: the live alias points at `version_arn`."""

    logical_id: str
    arn: str
    version_arn: str
    alias_arn: str
    asl_path: Path
    substitutions: dict[str, Any]


def _creation_order(machines: dict[str, tuple[Path, dict[str, Any]]]) -> list[str]:
    """Machines named by another's DefinitionSubstitutions (`Ref: <LogicalId>Version`) come before it."""
    order: list[str] = []

    def visit(logical: str, path: tuple[str, ...]) -> None:
        if logical in order:
            return
        if logical in path:
            raise ValueError(f"state machines reference each other in a cycle: {' -> '.join((*path, logical))}")
        for ref in _refs(machines[logical][1]):
            named = ref.removesuffix("Version")
            if ref.endswith("Version") and named in machines:
                visit(named, (*path, logical))
        order.append(logical)

    for logical in machines:
        visit(logical, ())
    return order


def _machine_versions(machines: dict[str, Machine]) -> dict[str, tuple[str, str]]:
    return {
        f"{m.logical_id}Version": ("AWS::StepFunctions::StateMachineVersion", m.version_arn) for m in machines.values()
    }


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


def _zip_placeholder() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README", "code runs in-process from the repository; see trainctl/sandbox/lambda_runtime.py")
    return buffer.getvalue()


def create_stack(
    root: Path, stack_name: str = "release-train", parameters: dict[str, str] | None = None, url_base: str | None = None
) -> Stack:
    """`url_base`: where `sandbox serve` answers the stack's function URLs (`<url_base>/lambda-url/<logical id>/`);
    without it their outputs are left out (nothing could reach them)."""
    template = yaml_parse((root / "template.yaml").read_text())
    code_dirs, machines = _code_in_s3(template, root, boto3.session.Session(), ARTIFACTS)
    if not machines:
        raise ValueError("template.yaml has no AWS::Serverless::StateMachine")

    cfn, raw_cfn, skipped = _translated(template, parameters or {})
    # Outputs of a skipped function URL (its FunctionUrl) are read from the API instead, or name the served URL.
    urls = {k for k, v in skipped.items() if v["Type"] == "AWS::Lambda::Url"}
    outputs: dict[str, Any] = {}
    for key, output in cfn.get("Outputs", {}).items():
        named = set(_refs(output)) & urls
        if not named:
            outputs[key] = output
        elif url_base is not None and len(named) == 1:
            outputs[key] = {**output, "Value": served_url(url_base, named.pop())}
    cfn["Outputs"] = outputs
    cfn.pop("Conditions", None) if not cfn.get("Conditions") else None

    session = boto3.session.Session()
    resources = _create_in_cloudformation(session, stack_name, cfn, parameters)
    lam = boto3.client("lambda")
    arns, versions, version_arns = _publish_functions(lam, code_dirs, resources, raw_cfn, ACCOUNT)
    function_urls: dict[str, str] = {}
    for url_logical in urls:  # SAM puts a function's URL on its `live` alias when AutoPublishAlias is set
        owner = str(raw_cfn["Resources"][url_logical]["Properties"]["TargetFunctionArn"]["Ref"])
        function_logical = _owner(raw_cfn["Resources"][owner]) or owner
        if function_logical not in resources:
            continue
        function_urls[url_logical] = function_logical
        lam.create_function_url_config(
            FunctionName=resources[function_logical][1],
            Qualifier="live",
            AuthType=raw_cfn["Resources"][url_logical]["Properties"]["AuthType"],
        )

    # moto's CloudFormation puts state machines where its interpreter does not look: create them through the API,
    # with the names and roles CloudFormation gave them; a machine another one names (its `<LogicalId>Version`)
    # first, as CloudFormation orders them by their references.
    iam, sfn = boto3.client("iam"), boto3.client("stepfunctions")
    created_machines: dict[str, Machine] = {}
    for logical in _creation_order(machines):
        asl, substitutions = machines[logical]
        known = {**resources, **_as_resources(versions), **_machine_versions(created_machines)}
        definition = _substitute(asl.read_text(), substitutions, known, arns, version_arns)
        role_arn = iam.get_role(RoleName=resources[f"{logical}Role"][1])["Role"]["Arn"]
        created = sfn.create_state_machine(
            name=resources[logical][1].rsplit(":", 1)[-1],
            definition=definition,
            roleArn=role_arn,
            type="STANDARD",
            publish=True,
        )
        alias_arn = sfn.create_state_machine_alias(
            name="live",
            routingConfiguration=[{"stateMachineVersionArn": created["stateMachineVersionArn"], "weight": 100}],
        )["stateMachineAliasArn"]
        created_machines[logical] = Machine(
            logical, created["stateMachineArn"], created["stateMachineVersionArn"], alias_arn, asl, substitutions
        )

    schedule = next(r for r in raw_cfn["Resources"].values() if r["Type"] == "AWS::Scheduler::Schedule")
    rule = next(
        (lid, r)
        for lid, r in raw_cfn["Resources"].items()
        if r["Type"] == "AWS::Events::Rule" and "aws.states" in json.dumps(r["Properties"].get("EventPattern", {}))
    )
    target_ref = rule[1]["Properties"]["Targets"][0]["Arn"]
    # SAM targets the function's GetAtt Arn, or its `live` alias (Ref) when AutoPublishAlias is set.
    if isinstance(target_ref, dict) and "Fn::GetAtt" in target_ref:
        target_logical = str(target_ref["Fn::GetAtt"][0])
    elif isinstance(target_ref, dict) and "Ref" in target_ref:
        target_logical = _owner(raw_cfn["Resources"][target_ref["Ref"]]) or str(target_ref["Ref"])
    else:
        target_logical = str(target_ref)
    main_logical = str(schedule["Properties"]["Target"]["Arn"]["Ref"])  # the alias -> its version -> the machine
    while main_logical not in created_machines:
        main_logical = _owner(raw_cfn["Resources"][main_logical]) or ""
    main = created_machines[main_logical]
    return Stack(
        name=stack_name,
        root=root,
        resources=resources,
        state_machine_arn=main.arn,
        schedule_input=json.loads(schedule["Properties"]["Target"]["Input"]),
        schedule_expression=_resolve_param(schedule["Properties"]["ScheduleExpression"], template, parameters),
        cleanup_rule={"pattern": rule[1]["Properties"]["EventPattern"], "function": resources[target_logical][1]},
        state_machine_alias_arn=main.alias_arn,
        function_versions=version_arns,
        function_urls=function_urls,
        machines=created_machines,
        main_machine=main.logical_id,
    )


def create_target_stack(
    root: Path, account: str, stack_name: str, parameters: dict[str, str], region: str
) -> dict[str, tuple[str, str]]:
    """accounts/target-account.yaml in a stage's account, as docs/accounts.md deploys it (same stack name as the tools
    stack): its roles, and the hooks CodeDeploy invokes there, registered to run as that account. Returns its
    resources (logical id -> (type, physical id))."""
    from trainctl.sandbox.accounts import session_for

    path = root / "accounts" / "target-account.yaml"
    template = yaml_parse(path.read_text())
    session = session_for(account, region)
    code_dirs, _ = _code_in_s3(template, path.parent, session, f"{ARTIFACTS}-{account}")  # bucket names are global
    cfn, raw_cfn, _ = _translated(template, parameters)
    cfn["Outputs"] = {}  # they name the skipped aliases' ARNs; nothing in the sandbox reads them
    resources = _create_in_cloudformation(session, stack_name, cfn, parameters)
    _publish_functions(session.client("lambda"), code_dirs, resources, raw_cfn, account)
    return resources


def _translated(
    template: dict[str, Any], parameters: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """SAM -> CloudFormation offline, without the types moto's CloudFormation cannot create: (what moto creates, the
    whole translation, the skipped resources by logical id)."""
    cfn = transform(template, parameters, _NoManagedPolicies())
    raw_cfn = json.loads(json.dumps(cfn))
    skipped = {k: v for k, v in cfn["Resources"].items() if v["Type"] in _UNSUPPORTED}
    for logical_id in skipped:
        del cfn["Resources"][logical_id]
    # What still names a skipped version or alias (a policy, an output) names the function or machine instead.
    owners = {k: o for k, v in skipped.items() if (o := _owner(v))}
    cfn = _repoint(cfn, owners, {k for k, v in skipped.items() if v["Type"].startswith("AWS::Lambda::")})
    return cfn, raw_cfn, skipped


def _code_in_s3(
    template: dict[str, Any], base: Path, session: Any, bucket: str
) -> tuple[dict[str, tuple[Path, str]], dict[str, tuple[Path, dict[str, Any]]]]:
    """Point the template's code at a placeholder in S3 (the code runs in-process from `base`): returns each
    function's (code dir, handler) and each state machine's (ASL file, DefinitionSubstitutions), by logical id."""
    s3 = session.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="code.zip", Body=_zip_placeholder())
    code_dirs: dict[str, tuple[Path, str]] = {}
    machines: dict[str, tuple[Path, dict[str, Any]]] = {}
    for logical_id, resource in template["Resources"].items():
        props = resource.setdefault("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            code_dirs[logical_id] = ((base / props["CodeUri"]).resolve(), props["Handler"])
            props["CodeUri"] = f"s3://{bucket}/code.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = f"s3://{bucket}/code.zip"
        elif resource["Type"] == "AWS::Serverless::StateMachine":
            machines[logical_id] = (base / props.pop("DefinitionUri"), props.pop("DefinitionSubstitutions", {}))
            props["Definition"] = _PLACEHOLDER_ASL
            props.pop("Logging", None)  # moto has no vended-logs delivery
    return code_dirs, machines


def _create_in_cloudformation(
    session: Any, stack_name: str, cfn: dict[str, Any], parameters: dict[str, str] | None
) -> dict[str, tuple[str, str]]:
    cloudformation = session.client("cloudformation")
    cloudformation.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(cfn),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in (parameters or {}).items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    described = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    if described["StackStatus"] != "CREATE_COMPLETE":
        raise RuntimeError(f"sandbox stack {described['StackStatus']}: {described.get('StackStatusReason')}")
    return {
        r["LogicalResourceId"]: (r["ResourceType"], r["PhysicalResourceId"])
        for r in cloudformation.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    }


def _publish_functions(
    lam: Any,
    code_dirs: dict[str, tuple[Path, str]],
    resources: dict[str, tuple[str, str]],
    raw_cfn: dict[str, Any],
    account: str,
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """AutoPublishAlias: publish each function's version 1, point `live` at it, and register it to run in-process.
    Returns (function logical id -> ARN, generated AWS::Lambda::Version logical id -> its ARN, function logical id
    -> the ARN of its published version)."""
    arns: dict[str, str] = {}
    versions: dict[str, str] = {}
    version_arns: dict[str, str] = {}
    for logical_id, (code_dir, handler) in code_dirs.items():
        if logical_id not in resources:  # its Condition is false for these parameters: CloudFormation made none
            continue
        name = resources[logical_id][1]
        version = lam.publish_version(FunctionName=name)["Version"]
        lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
        config = lam.get_function_configuration(FunctionName=name)
        version_arns[logical_id] = f"{config['FunctionArn']}:{version}"
        for generated, body in raw_cfn["Resources"].items():
            if body["Type"] == "AWS::Lambda::Version" and body["Properties"]["FunctionName"] == {"Ref": logical_id}:
                versions[generated] = version_arns[logical_id]
        registry.register(
            FunctionSpec(
                name=name,
                logical_id=logical_id,
                code_dir=code_dir,
                handler=handler,
                environment=config.get("Environment", {}).get("Variables", {}),
                timeout_s=int(config.get("Timeout", 3)),
                memory_mb=int(config.get("MemorySize", 128)),
                arn=config["FunctionArn"],
                account=account,
            )
        )
        arns[logical_id] = config["FunctionArn"]
    return arns, versions, version_arns


def served_url(url_base: str, url_logical: str) -> str:
    """A function URL as `sandbox serve` answers it on loopback (AWS's are https://<url-id>.lambda-url.<region>.on.aws/,
    which cannot resolve to this machine)."""
    return f"{url_base.rstrip('/')}/lambda-url/{url_logical}/"


def _owner(resource: dict[str, Any]) -> str | None:
    """The function or state machine a version or alias belongs to (its logical id)."""
    props = resource.get("Properties", {})
    for key in ("FunctionName", "StateMachineArn"):
        ref = props.get(key)
        if isinstance(ref, dict) and "Ref" in ref:
            return str(ref["Ref"])
    preference = props.get("DeploymentPreference") or {}
    version = preference.get("StateMachineVersionArn")
    if isinstance(version, dict) and "Ref" in version:
        return str(version["Ref"])  # an alias -> its version (itself repointed to the machine below)
    return None


def _repoint(value: Any, owners: dict[str, str], lambdas: set[str]) -> Any:
    """A Ref to a skipped version or alias becomes its owner's ARN (a Lambda function's Ref is its name, so its
    GetAtt Arn; a state machine's Ref is already its ARN)."""
    if isinstance(value, dict):
        if set(value) == {"Ref"} and value["Ref"] in owners:
            skipped, target = value["Ref"], owners[value["Ref"]]
            while target in owners:
                target = owners[target]
            return {"Fn::GetAtt": [target, "Arn"]} if skipped in lambdas else {"Ref": target}
        return {k: _repoint(v, owners, lambdas) for k, v in value.items()}
    if isinstance(value, list):
        return [_repoint(v, owners, lambdas) for v in value]
    return value


def _refs(value: Any) -> list[str]:
    """Every logical id a Ref or GetAtt inside `value` names."""
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            return [value["Ref"]]
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return [str(target[0] if isinstance(target, list) else str(target).split(".")[0])]
        return [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


def _as_resources(versions: dict[str, str]) -> dict[str, tuple[str, str]]:
    return {logical: ("AWS::Lambda::Version", arn) for logical, arn in versions.items()}


def template_parameters(root: Path, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The stack's parameter values as CloudFormation would resolve them: each default, overridden by `overrides`."""
    declared = yaml_parse((root / "template.yaml").read_text()).get("Parameters", {})
    values = {name: str(spec.get("Default", "")) for name, spec in declared.items()}
    return {**values, **(overrides or {})}


def _resolve_param(value: Any, template: dict[str, Any], parameters: dict[str, str] | None) -> str:
    if isinstance(value, dict) and "Ref" in value:
        name = value["Ref"]
        return (parameters or {}).get(name) or str(template["Parameters"][name].get("Default", ""))
    return str(value)


def _substitute(
    text: str,
    substitutions: dict[str, Any],
    resources: dict[str, tuple[str, str]],
    arns: dict[str, str],
    versions: dict[str, str] | None = None,
) -> str:
    """`${Name}` -> value, as CloudFormation does for DefinitionSubstitutions (Ref, `Ref Fn.Version` -- SAM's name for
    the version AutoPublishAlias published -- and GetAtt .Arn only here)."""
    values: dict[str, str] = {}
    for key, value in substitutions.items():
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            logical, attribute = value["Fn::GetAtt"]
            values[key] = arns[logical] if attribute == "Arn" and logical in arns else resources[logical][1]
        elif isinstance(value, dict) and str(value.get("Ref", "")).endswith(".Version"):
            values[key] = (versions or {})[str(value["Ref"]).removesuffix(".Version")]
        elif isinstance(value, dict) and "Ref" in value:
            values[key] = resources[value["Ref"]][1]
        else:
            values[key] = str(value)

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"ASL placeholder ${{{name}}} has no DefinitionSubstitutions entry in template.yaml")
        return values[name]

    return re.sub(r"\$\{([A-Za-z0-9_]+)\}", replace, text)


def redeploy(stack: Stack) -> str:
    """`sam deploy` of the same stack again: every function publishes a new version (its `live` alias moves), each
    state machine's definition names the new versions, a new state machine version is published and `live` moves to
    it. Executions already running keep the version they started on. Returns the main machine's new version ARN."""
    lam = boto3.client("lambda")
    version_arns: dict[str, str] = {}
    for logical, arn in stack.function_versions.items():
        name = stack.physical(logical)
        # New code (a new description stands for it): Lambda publishes no version for an unchanged function.
        generation = int(arn.rsplit(":", 1)[1]) + 1
        lam.update_function_configuration(FunctionName=name, Description=f"release-train build {generation}")
        version = lam.publish_version(FunctionName=name)["Version"]
        lam.update_alias(FunctionName=name, Name="live", FunctionVersion=version)
        version_arns[logical] = f"{arn.rsplit(':', 1)[0]}:{version}"
    stack.function_versions = version_arns
    sfn = boto3.client("stepfunctions")
    sources = {k: (m.asl_path, m.substitutions) for k, m in stack.machines.items()}
    for logical in _creation_order(sources):
        machine = stack.machines[logical]
        known = {**stack.resources, **_machine_versions(stack.machines)}
        definition = _substitute(machine.asl_path.read_text(), machine.substitutions, known, {}, version_arns)
        new = sfn.update_state_machine(stateMachineArn=machine.arn, definition=definition, publish=True)
        sfn.update_state_machine_alias(
            stateMachineAliasArn=machine.alias_arn,
            routingConfiguration=[{"stateMachineVersionArn": new["stateMachineVersionArn"], "weight": 100}],
        )
        machine.version_arn = str(new["stateMachineVersionArn"])
    return stack.machines[stack.main_machine].version_arn
