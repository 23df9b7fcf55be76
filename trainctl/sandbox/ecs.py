"""Emulated CodeDeploy for ECS blue/green, over moto's ECS and ELBv2, with the service running on loopback.

A fleet service whose deploy is `platform: ecs` (release_train.domain.fleet.EcsDeploy) gets, in each stage's account,
what examples/orders-ecs/template.yaml creates: a cluster and a service with deploymentController CODE_DEPLOY, its
task definition, an application load balancer with a production and a test listener and two target groups (moto's
ECS and ELBv2). What moto cannot do, the sandbox does beside it:
- each task set is a real HTTP server on 127.0.0.1 running the service's app in-process (examples/orders-ecs/app for a
  service that matches that example, a stand-in answering GET /health otherwise), registered in its target group
  (RegisterTargets: Id 127.0.0.1, Port = the server's port). moto 5.2's CreateTaskSet fails for awsvpc task
  definitions, so task sets are kept here and reported through CodeDeploy's ECSTarget.taskSetsInfo;
- each listener is a real HTTP proxy on 127.0.0.1 whose port is the listener's Port in moto. For every request it
  reads the listener's default action from moto (DescribeListeners: the forward action's target groups and weights),
  picks a target group (smooth weighted round robin: deterministic), the group's target (DescribeTargetHealth) and
  forwards the request there with the X-Forwarded-* headers an ALB adds;
- the load balancer's DNS name, as moto gives it, resolves to 127.0.0.1 (network.serve_name_on_loopback): the hooks
  reach the test listener at http://<DNSName>:<Port> exactly as the hooks' ELBv2 adapter builds it. The listeners are
  HTTP, not HTTPS as in the example (the sandbox has no certificate for the service's host).

When a build of such a service reaches its deploy step in one of its canary stages, `EcsDeployments.deploy` creates a
deployment whose AppSpec is the one examples/orders-ecs/deploy/orders_release.py writes (TargetService, its
TaskDefinition and LoadBalancerInfo, the stack's hooks for BeforeAllowTraffic/AfterAllowTraffic) and runs it on the
virtual clock, in the order of the CodeDeploy User Guide ("What happens during an Amazon ECS deployment"): install the
replacement (green) task set, route the test listener to it, BeforeAllowTraffic, shift the production listener in the
configuration's steps (the scenario's canary alarms), AfterAllowTraffic. A Failed or missing hook report, an alarm or
a StopDeployment rolls back: both listeners back to the original (blue) target group, the green task set removed.
Outside the canary stages the new task set replaces the old one at once, without hooks (as the Lambda emulation moves
aliases at once). The hooks are the stack's real functions, invoked as codedeploy.py invokes them for Lambda.

The CodeDeploy operations are answered through codedeploy.py's routes (`route`), for deployments of this module only;
API shapes follow botocore's codedeploy model (the dispatcher validates every answer against it).
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from samtranslator.yaml_helper import yaml_parse

from release_train.domain.hook_targets import CHECKS_PREFIX
from trainctl.sandbox import network, vtime
from trainctl.sandbox.codedeploy import (
    DEPLOYMENT_CONFIGS,
    ROLLBACK_S,
    DeployRun,
    deployment_info,
    maybe_throttle,
    record_hook_status,
    request_stop,
    run_hook,
)
from trainctl.sandbox.emulators import ApiError
from trainctl.sandbox.scenario import HookBehaviour

if TYPE_CHECKING:
    from release_train.domain.fleet import EcsSite, Service
    from trainctl.sandbox.codebuild import Build
    from trainctl.sandbox.emulators import World

# The ECS configurations shift like the Lambda ones of the same name (CodeDeploy User Guide, "Deployment
# configurations on an Amazon ECS compute platform": 10% then the rest after 5 or 15 minutes; 10% more every 1 or
# 3 minutes; all at once).
ECS_DEPLOYMENT_CONFIGS: dict[str, list[tuple[float, float]]] = {
    f"CodeDeployDefault.{ecs}": DEPLOYMENT_CONFIGS[f"CodeDeployDefault.Lambda{lam}"]
    for ecs, lam in {
        "ECSAllAtOnce": "AllAtOnce",
        "ECSCanary10Percent5Minutes": "Canary10Percent5Minutes",
        "ECSCanary10Percent15Minutes": "Canary10Percent15Minutes",
        "ECSLinear10PercentEvery1Minutes": "Linear10PercentEvery1Minute",
        "ECSLinear10PercentEvery3Minutes": "Linear10PercentEvery3Minutes",
    }.items()
}
# Starting the replacement tasks and passing the target group's health checks (the example's: 2 x 10 s) takes time;
# a minute of virtual time stands for it.
INSTALL_S = 60.0
SERVICE_HOST = "{service}.sandbox.internal"  # the example's ServiceHost parameter, in the sandbox
_OPERATIONS = (
    "GetDeployment",
    "GetApplicationRevision",
    "PutLifecycleEventHookExecutionStatus",
    "StopDeployment",
    "ListDeployments",
    "ListDeploymentTargets",
    "BatchGetDeploymentTargets",
)


# --- the service's tasks and the load balancer, on loopback ---------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    host: str | None
    forwarded_port: str | None  # X-Forwarded-Port: the listener it came through


class TaskServer:
    """One task set: the service's app on a loopback port. `broken`: answers 500 to everything (a bad release)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], label: str) -> None:
        self.label = label
        self.requests: list[Request] = []
        self.broken = False
        server = self

        class Counted(handler):  # type: ignore[valid-type, misc]
            def parse_request(self) -> bool:
                if not super().parse_request():
                    return False
                server.requests.append(
                    Request(self.command, self.path, self.headers.get("Host"), self.headers.get("X-Forwarded-Port"))
                )
                if server.broken:
                    self.send_error(500, "sandbox scenario: the new task set fails every request")
                    return False
                return True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Counted)
        self._http.daemon_threads = True
        self.port = int(self._http.server_address[1])
        # A plain daemon thread, not a participant: it serves whoever calls, in wall time, like a container.
        self._thread = threading.Thread(target=self._http.serve_forever, name=f"ecs-task:{label}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()


class ListenerProxy:
    """An ALB listener on loopback: forwards each request to a target of the group its default action picks."""

    _HOP: ClassVar[set[str]] = {"connection", "keep-alive", "transfer-encoding", "content-length"}

    def __init__(self, ecs: EcsDeployments, account: str, name: str) -> None:
        self.ecs, self.account, self.name = ecs, account, name
        self.listener_arn = ""  # set once moto created the listener on this port
        self._credit: dict[str, float] = {}
        self._lock = threading.Lock()
        proxy = self

        class Forward(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                target = proxy.pick()
                if target is None:
                    self.send_error(503, "no registered target in the target group")  # as an ALB answers then
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in proxy._HOP}
                headers.update(
                    {
                        "X-Forwarded-For": self.client_address[0],
                        "X-Forwarded-Proto": "http",
                        "X-Forwarded-Port": str(proxy.port),
                    }
                )
                connection = http.client.HTTPConnection(target[0], target[1], timeout=30)
                try:
                    connection.request(self.command, self.path, body=body, headers=headers)
                    answer = connection.getresponse()
                    payload = answer.read()
                finally:
                    connection.close()
                self.send_response(answer.status, answer.reason)
                for key, value in answer.getheaders():
                    if key.lower() not in proxy._HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self._http.daemon_threads = True
        self.port = int(self._http.server_address[1])
        self._thread = threading.Thread(target=self._http.serve_forever, name=f"alb:{name}", daemon=True)
        self._thread.start()

    def pick(self) -> tuple[str, int] | None:
        """The target the listener sends this request to, read from moto as it is now."""
        elbv2 = self.ecs.world.client("elbv2", self.account)
        actions = elbv2.describe_listeners(ListenerArns=[self.listener_arn])["Listeners"][0]["DefaultActions"]
        forward = next(a for a in actions if a["Type"] == "forward")
        groups = (forward.get("ForwardConfig") or {}).get("TargetGroups") or [
            {"TargetGroupArn": forward["TargetGroupArn"], "Weight": 1}
        ]
        weights = {g["TargetGroupArn"]: float(g.get("Weight", 1)) for g in groups if g.get("Weight", 1) > 0}
        if not weights:
            return None
        with self._lock:  # smooth weighted round robin: 90/10 sends exactly 1 request in 10 to the second group
            for arn, weight in weights.items():
                self._credit[arn] = self._credit.get(arn, 0.0) + weight
            chosen = max(sorted(weights), key=lambda arn: self._credit[arn])
            self._credit[chosen] -= sum(weights.values())
        health = elbv2.describe_target_health(TargetGroupArn=chosen)["TargetHealthDescriptions"]
        if not health:
            return None
        target = health[0]["Target"]
        return str(target["Id"]), int(target["Port"])

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()


# --- the ECS service of one fleet service in one stage ---------------------------------------------------------------


@dataclass
class TaskSet:
    identifier: str  # ECSTaskSet.identifer (sic, botocore's member name)
    label: str  # Blue (original) or Green (replacement), as the deployment names it
    task_definition: str  # its ARN
    target_group: str  # the ARN of the target group it is registered in
    server: TaskServer


@dataclass
class EcsService:
    service: str  # the fleet's service
    stage: str
    account: str
    names: EcsSite
    handler: Callable[[str], type[BaseHTTPRequestHandler]]  # (version) -> the app's request handler class
    checks: dict[str, Any]
    service_arn: str = ""
    dns_name: str = ""
    target_groups: dict[str, str] = field(default_factory=dict)  # ARN -> name
    production: ListenerProxy | None = None
    test: ListenerProxy | None = None
    live: TaskSet | None = None  # the task set production traffic reaches
    retired: list[TaskSet] = field(default_factory=list)  # stopped task sets (their request counts stay readable)

    @property
    def target_id(self) -> str:
        # BatchGetDeploymentTargets: ECS target IDs are "<clustername>:<servicename>" (CodeDeploy API reference).
        return f"{self.names.cluster}:{self.names.service}"

    def spare_group(self) -> str:
        """The target group the live task set is not in: where the replacement goes."""
        assert self.live is not None
        return next(arn for arn in self.target_groups if arn != self.live.target_group)


@dataclass
class EcsDeployment:
    id: str
    site: EcsService
    config: str
    appspec: str
    description: str
    create_v: float
    blue: TaskSet
    green: TaskSet
    build_id: str | None
    status: str = "Created"
    complete_v: float | None = None
    commit: str | None = None
    error: str | None = None
    error_code: str = "HEALTH_CONSTRAINTS"  # botocore's ErrorCode enum
    rolled_back: bool = False
    hooks: dict[str, str] = field(default_factory=dict)  # execution id -> phase
    reports: dict[str, str] = field(default_factory=dict)
    reported: dict[str, vtime.VEvent] = field(default_factory=dict)
    report_calls: list[dict[str, Any]] = field(default_factory=list)
    hook_results: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # lifecycle events: name, status, start_v, end_v
    routing: list[dict[str, dict[str, float]]] = field(default_factory=list)  # listener -> target group -> weight
    failing_phase: str | None = None
    stop_requested: vtime.VEvent = field(default_factory=vtime.VEvent)
    stop_rollback: bool = True
    finished: vtime.VEvent = field(default_factory=vtime.VEvent)

    @property
    def application(self) -> str:
        return self.site.names.application

    @property
    def group(self) -> str:
        return self.site.names.deployment_group

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.appspec.encode()).hexdigest()


class EcsDeployments:
    def __init__(self, world: World) -> None:
        self.world = world
        self.sites: dict[tuple[str, str], EcsService] = {}  # (service, stage) -> its ECS service
        self.deployments: dict[str, EcsDeployment] = {}
        self.hook_functions: dict[str, str] = {}
        self._names: list[str] = []  # load balancer DNS names served on loopback
        self._lock = threading.Lock()

    # --- set-up: each ECS service as the last release left it ----------------------------------------------------

    def prepare(self, root: Path, pre_traffic: str, post_traffic: str, running: dict[str, str] | None = None) -> None:
        """Create every ECS service of the fleet in every stage, its task set running the commit `running` names."""
        fleet = self.world.fleet
        if fleet is None:
            return
        self.hook_functions = {"pre_traffic": pre_traffic, "post_traffic": post_traffic}
        examples = _ExampleServices(root)
        for service in fleet.services:
            for stage in fleet.stages:
                names = fleet.ecs_for(service, stage.name)
                if names is None:
                    continue
                site = self._create(service, stage.name, names, examples, (running or {}).get(service.name))
                self.sites[(service.name, stage.name)] = site

    def _create(
        self, service: Service, stage: str, names: EcsSite, examples: _ExampleServices, commit: str | None
    ) -> EcsService:
        account = self.world.stage_account(stage)
        example = examples.find(names)
        checks = example.checks(service.name) if example else _standin_checks()
        site = EcsService(service.name, stage, account, names, example.handler if example else _standin_handler, checks)
        ec2, elbv2, ecs = (self.world.client(s, account) for s in ("ec2", "elbv2", "ecs"))
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{n}.0/24", AvailabilityZone=f"{self.world.region}{zone}")[
                "Subnet"
            ]["SubnetId"]
            for n, zone in ((1, "a"), (2, "b"))
        ]
        group = ec2.create_security_group(GroupName=f"{names.cluster}-sg", Description="sandbox", VpcId=vpc)["GroupId"]
        name = _elb_name(names.cluster)
        balancer = elbv2.create_load_balancer(
            Name=name, Subnets=subnets, SecurityGroups=[group], Scheme="internal", Type="application"
        )["LoadBalancers"][0]
        site.dns_name = str(balancer["DNSName"])
        network.serve_name_on_loopback(site.dns_name)
        self._names.append(site.dns_name)
        for color in ("blue", "green"):
            made = elbv2.create_target_group(
                Name=f"{name[:26]}-{color}",
                Protocol="HTTP",
                Port=names.port,
                VpcId=vpc,
                TargetType="ip",
                HealthCheckPath="/health",
            )["TargetGroups"][0]
            site.target_groups[str(made["TargetGroupArn"])] = str(made["TargetGroupName"])
        blue = next(iter(site.target_groups))
        for which in ("production", "test"):
            proxy = ListenerProxy(self, account, f"{name}:{which}")
            proxy.listener_arn = str(
                elbv2.create_listener(
                    LoadBalancerArn=balancer["LoadBalancerArn"],
                    Protocol="HTTP",
                    Port=proxy.port,
                    DefaultActions=[{"Type": "forward", "TargetGroupArn": blue}],
                )["Listeners"][0]["ListenerArn"]
            )
            setattr(site, which, proxy)
        ecs.create_cluster(clusterName=names.cluster)
        task_definition = self._register(site, commit)
        site.service_arn = str(
            ecs.create_service(
                cluster=names.cluster,
                serviceName=names.service,
                taskDefinition=task_definition,
                desiredCount=2,
                launchType="FARGATE",
                deploymentController={"type": "CODE_DEPLOY"},
                loadBalancers=[{"targetGroupArn": blue, "containerName": names.container, "containerPort": names.port}],
                networkConfiguration={
                    "awsvpcConfiguration": {"subnets": subnets, "securityGroups": [group], "assignPublicIp": "DISABLED"}
                },
            )["service"]["serviceArn"]
        )
        site.live = self._task_set(site, task_definition, blue, "Blue", commit)
        return site

    def _register(self, site: EcsService, commit: str | None) -> str:
        """A task definition revision for `commit` (orders_release.py: the family's container with a new image and
        VERSION); moto places tasks by the container's memory, so it is given one."""
        version = commit[:12] if commit else "bootstrap"
        answer = self.world.client("ecs", site.account).register_task_definition(
            family=site.names.cluster,
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu="256",
            memory="512",
            containerDefinitions=[
                {
                    "name": site.names.container,
                    "image": f"{site.names.service}:{version}",
                    "memory": 512,
                    "essential": True,
                    "portMappings": [{"containerPort": site.names.port, "protocol": "tcp"}],
                    "environment": [{"name": "VERSION", "value": version}],
                }
            ],
        )
        return str(answer["taskDefinition"]["taskDefinitionArn"])

    def _task_set(self, site: EcsService, task_definition: str, group: str, label: str, commit: str | None) -> TaskSet:
        server = TaskServer(site.handler(commit[:12] if commit else "bootstrap"), f"{site.names.service}:{label}")
        elbv2 = self.world.client("elbv2", site.account)
        elbv2.register_targets(TargetGroupArn=group, Targets=[{"Id": "127.0.0.1", "Port": server.port}])
        return TaskSet(f"ecs-svc/{uuid.uuid4().int % 10**19:019d}", label, task_definition, group, server)

    def _retire(self, site: EcsService, task_set: TaskSet) -> None:
        elbv2 = self.world.client("elbv2", site.account)
        elbv2.deregister_targets(
            TargetGroupArn=task_set.target_group, Targets=[{"Id": "127.0.0.1", "Port": task_set.server.port}]
        )
        task_set.server.stop()
        site.retired.append(task_set)

    def stop(self) -> None:
        """End of the simulation: stop every server, stop resolving the load balancers' names."""
        for site in self.sites.values():
            for task_set in (site.live, *(d.green for d in self.deployments.values() if d.site is site)):
                if task_set is not None and task_set not in site.retired:
                    task_set.server.stop()
                    site.retired.append(task_set)
            for proxy in (site.production, site.test):
                if proxy is not None:
                    proxy.stop()
        for name in self._names:
            network.stop_serving_name(name)
        self._names.clear()

    # --- a build's deploy step --------------------------------------------------------------------------------

    def deploy(self, build: Build) -> DeployRun | None:
        """None unless the build's service is an ECS service of this sandbox."""
        fleet = self.world.fleet
        if fleet is None or build.service is None:
            return None
        site = self.sites.get((build.service, build.stage))
        if site is None:
            return None
        service = fleet.service(build.service)
        deploy = service.ecs_deploy
        assert deploy is not None and site.live is not None
        task_definition = self._register(site, build.source_version)
        if build.stage not in fleet.canary_stages(service):
            # No traffic shifting outside the canary stages: the replacement takes both listeners at once.
            green = self._task_set(site, task_definition, site.spare_group(), "Green", build.source_version)
            self._route(site, {green.target_group: 1.0})
            old, site.live = site.live, green
            self._retire(site, old)
            run = DeployRun([], succeeded=True)
            run.finished.set()
            return run
        deployment = self._new_deployment(site, deploy.deployment_config, task_definition, build)
        run = DeployRun([])
        build.deployments.append(deployment.id)
        vtime.spawn(lambda: self._run(deployment, run), f"ecs-deployment:{deployment.id}")
        return run

    def _new_deployment(self, site: EcsService, config: str, task_definition: str, build: Build) -> EcsDeployment:
        assert site.live is not None
        ssm = self.world.client("ssm", site.account)
        # Where the hooks look for an ECS deployment's checks: <prefix>/ecs/<application>/<deployment group>.
        ssm.put_parameter(
            Name=f"{CHECKS_PREFIX}/ecs/{site.names.application}/{site.names.deployment_group}",
            Type="String",
            Value=json.dumps(site.checks),
            Overwrite=True,
        )
        appspec = _appspec(
            task_definition,
            site.names.container,
            site.names.port,
            self.hook_functions.get("pre_traffic", ""),
            self.hook_functions.get("post_traffic", ""),
        )
        release = build.env.get("RELEASE_ID", "")
        placeholder = TaskSet("", "Green", task_definition, site.spare_group(), site.live.server)  # until Install
        deployment = EcsDeployment(
            id=f"d-{uuid.uuid4().hex[:9].upper()}",
            site=site,
            config=config,
            appspec=appspec,
            description=f"release {release} commit {build.source_version}"[:1000],
            create_v=self.world.clock.elapsed,
            blue=site.live,
            green=placeholder,
            build_id=build.id,
            commit=build.source_version,
        )
        with self._lock:
            self.deployments[deployment.id] = deployment
        return deployment

    # --- one deployment in virtual time ----------------------------------------------------------------------

    def _run(self, d: EcsDeployment, run: DeployRun) -> None:
        site = d.site
        d.status = "InProgress"
        d.routing.append(self._weights(site))
        behaviour = self._behaviour(site)
        ok = self._event(d, "Install", lambda: self._install(d, behaviour))
        if ok:
            ok = self._event(d, "AllowTestTraffic", lambda: self._allow_test_traffic(d))
        if ok:
            ok = self._hook(d, "pre_traffic", behaviour)
        if ok:
            ok = self._event(d, "AllowTraffic", lambda: self._shift(d))
        if ok:
            ok = self._hook(d, "post_traffic", behaviour)
        stopped = d.stop_requested.is_set()
        if ok and not stopped:
            old, site.live = site.live, d.green
            assert old is not None
            self._retire(site, old)  # TerminateBlueInstancesOnDeploymentSuccess
            d.status = "Succeeded"
        else:
            if (not stopped or d.stop_rollback) and d.green.identifier:
                vtime.current().sleep(ROLLBACK_S)
                self._route(site, {d.blue.target_group: 1.0})
                d.routing.append(self._weights(site))
                self._retire(site, d.green)
                d.rolled_back = True
            d.status = "Stopped" if stopped else "Failed"
        d.complete_v = self.world.clock.elapsed
        d.finished.set()
        run.succeeded = d.status == "Succeeded"
        run.finished.set()

    def _event(self, d: EcsDeployment, name: str, step: Any) -> bool:
        start = self.world.clock.elapsed
        ok = bool(step())
        d.events.append({"name": name, "status": "Succeeded" if ok else "Failed", "start_v": start})
        d.events[-1]["end_v"] = self.world.clock.elapsed
        return ok

    def _install(self, d: EcsDeployment, behaviour: HookBehaviour) -> bool:
        """The replacement task set starts and registers in the spare target group."""
        d.green = self._task_set(d.site, d.green.task_definition, d.green.target_group, "Green", d.commit)
        if "fail" in (behaviour.pre_traffic, behaviour.post_traffic):
            d.green.server.broken = True  # the scenario's bad release: its checks fail
        if d.stop_requested.wait(INSTALL_S):
            d.error, d.error_code = "stopped while the replacement task set started", "MANUAL_STOP"
            return False
        return True

    def _allow_test_traffic(self, d: EcsDeployment) -> bool:
        assert d.site.test is not None
        self._forward(d.site, d.site.test.listener_arn, {d.green.target_group: 1.0})
        d.routing.append(self._weights(d.site))
        if d.stop_requested.is_set():
            d.error, d.error_code = "stopped before traffic was allowed", "MANUAL_STOP"
            return False
        return True

    def _behaviour(self, site: EcsService) -> HookBehaviour:
        return self.world.scenario.hooks.get(site.service) or HookBehaviour()

    def _hook(self, d: EcsDeployment, phase: str, behaviour: HookBehaviour) -> bool:
        """As codedeploy.py's Lambda hooks: the stack's hook function invoked asynchronously (Lambda's retries), the
        deployment waiting for its report up to the hook limit."""
        name = {"pre_traffic": "BeforeAllowTraffic", "post_traffic": "AfterAllowTraffic"}[phase]
        start = self.world.clock.elapsed
        ok = run_hook(d, phase, behaviour, self.hook_functions[phase], d.site.account, self._lock)
        d.events.append(
            {
                "name": name,
                "status": "Succeeded" if ok else "Failed",
                "start_v": start,
                "end_v": self.world.clock.elapsed,
            }
        )
        return ok

    def _shift(self, d: EcsDeployment) -> bool:
        world, site = self.world, d.site
        alarms = [
            a.name
            for a in world.scenario.alarms
            if a.during == "canary" and a.service == site.service and a.stage == site.stage
        ]
        for weight, wait in ECS_DEPLOYMENT_CONFIGS[d.config]:
            assert site.production is not None
            self._forward(
                site, site.production.listener_arn, {d.blue.target_group: 1.0 - weight, d.green.target_group: weight}
            )
            d.routing.append(self._weights(site))
            for name in alarms:
                world.alarms.set_state(
                    name, "ALARM", "scenario: errors on the new task set during the canary", site.account
                )
            if d.stop_requested.wait(wait):
                d.error, d.error_code = "stopped while traffic was shifting", "MANUAL_STOP"
                return False
            firing = world.alarms.firing(alarms, site.account)
            for alarm in world.scenario.alarms:
                if alarm.name in alarms and alarm.recovers:
                    world.alarms.set_state(alarm.name, "OK", "scenario: recovered", site.account)
            if firing:
                d.error, d.error_code = (
                    f"alarm(s) {', '.join(firing)} in ALARM during the traffic shift",
                    "ALARM_ACTIVE",
                )
                return False
        self._route(site, {d.green.target_group: 1.0})
        d.routing.append(self._weights(site))
        return True

    # --- the listeners, in moto ------------------------------------------------------------------------------

    def _route(self, site: EcsService, weights: dict[str, float]) -> None:
        for proxy in (site.production, site.test):
            assert proxy is not None
            self._forward(site, proxy.listener_arn, weights)

    def _forward(self, site: EcsService, listener_arn: str, weights: dict[str, float]) -> None:
        """ModifyListener: a weighted forward between the target groups (weights 0-999, ELBv2 API reference)."""
        groups = [{"TargetGroupArn": arn, "Weight": round(w * 100)} for arn, w in weights.items()]
        self.world.client("elbv2", site.account).modify_listener(
            ListenerArn=listener_arn, DefaultActions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}]
        )

    def _weights(self, site: EcsService) -> dict[str, dict[str, float]]:
        """Each listener's share of traffic per target group name, as moto holds it now."""
        elbv2 = self.world.client("elbv2", site.account)
        out: dict[str, dict[str, float]] = {}
        for which, proxy in (("production", site.production), ("test", site.test)):
            assert proxy is not None
            action = elbv2.describe_listeners(ListenerArns=[proxy.listener_arn])["Listeners"][0]["DefaultActions"][0]
            groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or [
                {"TargetGroupArn": action["TargetGroupArn"], "Weight": 1}
            ]
            total = sum(float(g.get("Weight", 1)) for g in groups) or 1.0
            out[which] = {
                site.target_groups[g["TargetGroupArn"]]: round(float(g.get("Weight", 1)) / total, 3) for g in groups
            }
        return out

    # --- the CodeDeploy API, for this module's deployments -----------------------------------------------------

    def route(self, operation: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """codedeploy.py's routes ask here first: an answer, or None when the deployment or application named is not
        an ECS one of this sandbox (in the caller's account). ListDeployments answers this module's part of the list."""
        if operation not in _OPERATIONS:
            return None
        if operation == "ListDeployments":
            return self.list_deployments(params)
        if operation == "GetApplicationRevision":
            return self.get_application_revision(params)
        d = self._find(str(params.get("deploymentId", "")))
        if d is None:
            return None
        answer: dict[str, Any] = {
            "GetDeployment": self.get_deployment,
            "PutLifecycleEventHookExecutionStatus": self.put_hook_status,
            "StopDeployment": self.stop_deployment,
            "ListDeploymentTargets": self.list_deployment_targets,
            "BatchGetDeploymentTargets": self.batch_get_deployment_targets,
        }[operation](d, params)
        return answer

    def _find(self, deployment_id: str) -> EcsDeployment | None:
        d = self.deployments.get(deployment_id)
        if d is None or d.site.account != self.world.caller():  # another account's deployment is not found
            return None
        return d

    def _at(self, virtual: float) -> datetime:
        return self.world.clock.start + timedelta(seconds=virtual)

    def get_deployment(self, d: EcsDeployment, params: dict[str, Any]) -> dict[str, Any]:
        maybe_throttle(d)
        site = d.site
        assert site.production is not None and site.test is not None
        info = deployment_info(d, self.world.clock.start, "ECS")
        info |= {
            "description": d.description,
            # The deployment group's, as examples/orders-ecs/template.yaml configures it (the sandbox stops the original
            # task set when the deployment ends: no listener reaches it any more).
            "blueGreenDeploymentConfiguration": {
                "deploymentReadyOption": {"actionOnTimeout": "CONTINUE_DEPLOYMENT", "waitTimeInMinutes": 0},
                "terminateBlueInstancesOnDeploymentSuccess": {"action": "TERMINATE", "terminationWaitTimeInMinutes": 5},
            },
            "loadBalancerInfo": {
                "targetGroupPairInfoList": [
                    {
                        "targetGroups": [{"name": name} for name in site.target_groups.values()],
                        "prodTrafficRoute": {"listenerArns": [site.production.listener_arn]},
                        "testTrafficRoute": {"listenerArns": [site.test.listener_arn]},
                    }
                ]
            },
        }
        return {"deploymentInfo": info}

    def get_application_revision(self, params: dict[str, Any]) -> dict[str, Any] | None:
        application = params["applicationName"]
        mine = [
            d
            for d in self.deployments.values()
            if d.site.account == self.world.caller() and d.application == application
        ]
        if not mine:
            return None  # not an ECS application of this sandbox: codedeploy.py answers
        revision = params["revision"]
        sha = (revision.get("appSpecContent") or {}).get("sha256")
        found = [d for d in mine if d.sha256 == sha]
        if revision.get("revisionType") != "AppSpecContent" or not found:
            raise ApiError("RevisionDoesNotExistException", "No application revision found for revision")
        for d in found:
            maybe_throttle(d)
        registered = self._at(found[0].create_v)
        return {
            "applicationName": application,
            "revision": {
                "revisionType": "AppSpecContent",
                "appSpecContent": {"content": found[0].appspec, "sha256": sha},
            },
            "revisionInfo": {
                "description": "Application revision registered by Deployment ID",
                "deploymentGroups": sorted({d.group for d in mine}),
                "firstUsedTime": registered,
                "lastUsedTime": self._at(found[-1].create_v),
                "registerTime": registered,
            },
        }

    def put_hook_status(self, d: EcsDeployment, params: dict[str, Any]) -> dict[str, Any]:
        return record_hook_status(d, params, self._lock)

    def stop_deployment(self, d: EcsDeployment, params: dict[str, Any]) -> dict[str, Any]:
        return request_stop(d, params)

    def list_deployments(self, params: dict[str, Any]) -> dict[str, Any]:
        wanted = set(params.get("includeOnlyStatuses") or [])
        window = params.get("createTimeRange") or {}
        ids = [
            d.id
            for d in sorted(self.deployments.values(), key=lambda x: (x.create_v, x.id))
            if d.site.account == self.world.caller()
            and (not params.get("applicationName") or d.application == params["applicationName"])
            and (not params.get("deploymentGroupName") or d.group == params["deploymentGroupName"])
            and (not wanted or d.status in wanted)
            and (window.get("start") is None or self._at(d.create_v) >= window["start"])
            and (window.get("end") is None or self._at(d.create_v) <= window["end"])
        ]
        return {"deployments": ids}

    def list_deployment_targets(self, d: EcsDeployment, params: dict[str, Any]) -> dict[str, Any]:
        return {"targetIds": [d.site.target_id]}

    _TARGET_STATUS: ClassVar[dict[str, str]] = {
        "Created": "Pending",
        "InProgress": "InProgress",
        "Succeeded": "Succeeded",
        "Failed": "Failed",
        "Stopped": "Failed",
    }

    def batch_get_deployment_targets(self, d: EcsDeployment, params: dict[str, Any]) -> dict[str, Any]:
        site = d.site
        weights = (d.routing[-1] if d.routing else self._weights(site)).get("production", {})

        def task_set(ts: TaskSet) -> dict[str, Any]:
            name = site.target_groups[ts.target_group]
            running = 0 if ts in site.retired or not ts.identifier else 2
            return {
                "identifer": ts.identifier,  # sic: botocore's codedeploy model spells the member this way
                "desiredCount": running,
                "pendingCount": 0,
                "runningCount": running,
                "status": "PRIMARY" if ts is site.live else "ACTIVE",
                "trafficWeight": round(weights.get(name, 0.0) * 100, 1),
                "targetGroup": {"name": name},
                "taskSetLabel": ts.label,
            }

        target = {
            "deploymentId": d.id,
            "targetId": site.target_id,
            "targetArn": site.service_arn,
            "lastUpdatedAt": self._at(d.complete_v if d.complete_v is not None else self.world.clock.elapsed),
            "status": self._TARGET_STATUS.get(d.status, "Unknown"),
            "lifecycleEvents": [
                {
                    "lifecycleEventName": e["name"],
                    "status": e["status"],
                    "startTime": self._at(e["start_v"]),
                    "endTime": self._at(e["end_v"]),
                }
                for e in d.events
            ],
            "taskSetsInfo": [task_set(ts) for ts in (d.blue, d.green) if ts.identifier],
        }
        wanted = params.get("targetIds") or []
        return {
            "deploymentTargets": [
                {"deploymentTargetType": "ECSTarget", "ecsTarget": target} for tid in wanted if tid == site.target_id
            ]
        }

    # --- what the runner reports ----------------------------------------------------------------------------

    def report(self) -> list[dict[str, Any]]:
        out = []
        for d in sorted(self.deployments.values(), key=lambda x: (x.create_v, x.id)):
            green = _group_name(d, d.green)
            out.append(
                {
                    "service": d.site.service,
                    "stage": d.site.stage,
                    "account": d.site.account,
                    "platform": "ECS",
                    "function": d.site.target_id,  # the deployment's target: <cluster>:<service>
                    "deployment_id": d.id,
                    "deployment_config": d.config,
                    "build_id": d.build_id,
                    "status": d.status,
                    "rolled_back": d.rolled_back,
                    "rolled_back_by_stack": False,
                    "error": d.error,
                    "current_version": d.blue.task_definition.rsplit(":", 1)[-1],
                    "target_version": d.green.task_definition.rsplit(":", 1)[-1],
                    "hooks": d.hook_results,
                    "report_calls": list(d.report_calls),
                    "lifecycle_events": [e["name"] + " " + e["status"] for e in d.events],
                    "routing_history": d.routing,
                    "traffic_reached_new_version": any(r.get("production", {}).get(green, 0) > 0 for r in d.routing),
                    "requests": {"blue": len(d.blue.server.requests), "green": len(d.green.server.requests)},
                    "virtual_duration_s": round((d.complete_v or self.world.clock.elapsed) - d.create_v, 3),
                }
            )
        return out


def _group_name(d: EcsDeployment, task_set: TaskSet) -> str:
    return d.site.target_groups.get(task_set.target_group, "")


# --- helpers -------------------------------------------------------------------------------------------------------


def _elb_name(cluster: str) -> str:
    """A load balancer name ELBv2 accepts (1-32 letters, digits and hyphens, no hyphen at either end)."""
    cleaned = "".join(c if c.isalnum() else "-" for c in cluster)[:32].strip("-")
    return cleaned or "sandbox"


def _appspec(task_definition: str, container: str, port: int, pre_hook: str, post_hook: str) -> str:
    """The AppSpec examples/orders-ecs/deploy/orders_release.py writes (same keys, same order)."""
    spec = {
        "version": 0.0,
        "Resources": [
            {
                "TargetService": {
                    "Type": "AWS::ECS::Service",
                    "Properties": {
                        "TaskDefinition": task_definition,
                        "LoadBalancerInfo": {"ContainerName": container, "ContainerPort": port},
                    },
                }
            }
        ],
        "Hooks": [{"BeforeAllowTraffic": pre_hook}, {"AfterAllowTraffic": post_hook}],
    }
    return json.dumps(spec, separators=(",", ":"))


def _standin_checks() -> dict[str, Any]:
    health = {
        "kind": "http",
        "name": "health",
        "request": {"method": "GET", "path": "/health"},
        "expect": {"status": 200},
    }
    return {"version": 1, "pre_traffic": [health], "post_traffic": [{**health, "name": "post-health"}]}


def _standin_handler(version: str) -> type[BaseHTTPRequestHandler]:
    class Standin(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/health"
            payload = json.dumps({"status": "ok", "version": version} if found else {"message": "not found"}).encode()
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Standin


@dataclass
class _ExampleService:
    """An example's ECS service: its app's handler and its checks parameter."""

    app: Path
    checks_text: str

    def handler(self, version: str) -> type[BaseHTTPRequestHandler]:
        spec = importlib.util.spec_from_file_location(f"sandbox_example_{self.app.parent.parent.name}", self.app)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        made: type[BaseHTTPRequestHandler] = module.make_handler(module.Orders(), version)
        return made

    def checks(self, service: str) -> dict[str, Any]:
        """The example's checks, resolved for the sandbox. Its post_traffic check calls https://<ServiceHost>, which
        the sandbox does not serve: AfterAllowTraffic re-runs the pre_traffic checks on the test listener (which then
        routes to the replacement too)."""
        text = self.checks_text.replace("${ServiceHost}", SERVICE_HOST.format(service=service))
        suite: dict[str, Any] = json.loads(text)
        suite["post_traffic"] = [{**c, "name": f"post-{c['name']}"} for c in suite.get("pre_traffic", [])]
        return suite


class _ExampleServices:
    """ECS services defined by `examples/*/template.yaml`: an AWS::ECS::Service whose ServiceName, container and port
    are the fleet's, with an app module exposing make_handler/Orders (examples/orders-ecs/app/orders_app.py)."""

    def __init__(self, root: Path) -> None:
        self._templates = sorted((root / "examples").glob("*/template.yaml"))

    def find(self, names: EcsSite) -> _ExampleService | None:
        for path in self._templates:
            resources = (yaml_parse(path.read_text()) or {}).get("Resources") or {}
            services = [r.get("Properties") or {} for r in resources.values() if r.get("Type") == "AWS::ECS::Service"]
            if not any(s.get("ServiceName") == names.service for s in services):
                continue
            containers = [
                c
                for r in resources.values()
                if r.get("Type") == "AWS::ECS::TaskDefinition"
                for c in (r.get("Properties") or {}).get("ContainerDefinitions") or []
            ]
            ports = {
                int(m.get("ContainerPort", 0))
                for c in containers
                if c.get("Name") == names.container
                for m in c.get("PortMappings") or []
            }
            apps = sorted((path.parent / "app").glob("*_app.py"))
            checks = [
                str((r.get("Properties") or {}).get("Value", {}).get("Fn::Sub", ""))
                for r in resources.values()
                if r.get("Type") == "AWS::SSM::Parameter"
                and "/ecs/" in json.dumps((r.get("Properties") or {}).get("Name"))
            ]
            if names.port in ports and apps and checks and checks[0]:
                return _ExampleService(apps[0], checks[0])
        return None


__all__ = ["ECS_DEPLOYMENT_CONFIGS", "EcsDeployment", "EcsDeployments", "EcsService", "TaskServer"]
