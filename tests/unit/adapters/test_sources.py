"""Resolving release branches: CodeCommit through boto3 (Stubber and counting stubs: moto has no GetBranch), GitHub's
GraphQL API over real HTTP.

GitHub is the sandbox's loopback stand-in (`trainctl.sandbox.sources`), scripted per (repo, branch), so the adapter
and the emulator the sandbox runs it against are held to the same contract. No test waits on the wall clock: the
adapter's sleep is a list that records the waits it asks for, its clock a fixed instant; only the timeout tests let a
0.2 s read timeout pass, against a server that does not answer until the test ends. Concurrency is counted with a
condition variable, never timed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.stub import Stubber
from graphql import FieldNode, OperationDefinitionNode, VariableNode, parse
from moto import mock_aws

from release_train.adapters.sources import (
    GITHUB_BATCH,
    SourceError,
    SourceRejected,
    Sources,
    SourceUnavailable,
    _BudgetedRetry,
    describe,
)
from release_train.domain.fleet import CodeCommitSource, GitHubSource
from tests.unit.adapters.loopback import Loopback, loopback_server
from trainctl.sandbox.sources import GitHubAnswer
from trainctl.sandbox.sources import Sources as EmulatedSources

SHA = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"
NOW = 1_795_000_000.0  # the clock both the adapter and the emulated GitHub read
TOKEN_SECRET = "release-train/github-token"
TOKEN = "ghp_Sup3rS3cretT0ken"
ORDERS = GitHubSource(github="acme/orders", branch="release", token_secret=TOKEN_SECRET)


def on_github(repo: str, branch: str = "release", token_secret: str | None = TOKEN_SECRET) -> GitHubSource:
    # model_construct: names fleet validation would refuse still reach the adapter, which must not rely on it
    return GitHubSource.model_construct(github=repo, branch=branch, token_secret=token_secret)


def sha_of(text: str) -> str:
    return f"{abs(hash(text)) % 16**40:040x}"


@pytest.fixture
def codecommit() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("codecommit", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def secrets() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("secretsmanager", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber


@pytest.fixture
def loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[Loopback]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a developer's proxy must not see the loopback calls
    with loopback_server() as server:
        yield server


@dataclass
class Tokens:
    """A Secrets Manager client (Powertools Parameters calls get_secret_value) holding one token per secret."""

    tokens: dict[str, str] = field(default_factory=dict)
    reads: list[str] = field(default_factory=list)

    def get_secret_value(self, SecretId: str, **_: Any) -> dict[str, Any]:
        self.reads.append(SecretId)
        return {"Name": SecretId, "SecretString": self.tokens.get(SecretId, TOKEN)}


@dataclass
class Sent:
    authorization: str | None
    query: str
    variables: dict[str, str]


@dataclass
class GitHub:
    """The emulated GitHub and an adapter pointed at it, with its waits recorded instead of slept."""

    emulator: EmulatedSources
    url: str
    secrets: Tokens = field(default_factory=Tokens)
    waits: list[float] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)  # every GraphQL request, with the token it carried
    in_flight: int = 0
    most_in_flight: int = 0

    def sources(self, **kwargs: Any) -> Sources:
        options: dict[str, Any] = {"sleep": self.waits.append, "clock": lambda: NOW, "timeout": (1.0, 0.2)}
        return Sources(None, self.secrets, self.url, **{**options, **kwargs})

    def script(self, *answers: int | GitHubAnswer, branch: str = "release") -> None:
        self.emulator.script_github("acme/orders", branch, *answers)

    def has(self, source: GitHubSource, sha: str | None = None) -> str:
        sha = sha or sha_of(describe(source))
        self.emulator.github_heads[(source.github, source.branch)] = sha
        return sha

    @property
    def attempts(self) -> int:
        return len(self.emulator.github_requests)


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[GitHub]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    world = SimpleNamespace(clock=SimpleNamespace(now=lambda: datetime.fromtimestamp(NOW, UTC)))
    emulator = EmulatedSources(world)  # type: ignore[arg-type]
    url = emulator.start_github()
    emulator.github_heads[("acme/orders", "release")] = SHA
    state = GitHub(emulator, url)
    answer = emulator.reply
    lock = threading.Lock()

    def reply(path: str, authorization: str | None, raw: bytes) -> Any:  # records each request and the overlap
        with lock:
            state.in_flight += 1
            state.most_in_flight = max(state.most_in_flight, state.in_flight)
        try:
            body = json.loads(raw or b"{}")
            state.sent.append(Sent(authorization, body.get("query", ""), body.get("variables") or {}))
            return answer(path, authorization, raw)
        finally:
            with lock:
                state.in_flight -= 1

    monkeypatch.setattr(emulator, "reply", reply)
    try:
        yield state
    finally:
        emulator.stop_github()


def aliases(query: str) -> list[tuple[str, str, str, str]]:
    """(alias, owner variable, name variable, qualifiedName variable) of each top-level field, as GitHub parses it."""
    operation = parse(query).definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    found = []
    for selection in operation.selection_set.selections:
        assert isinstance(selection, FieldNode) and selection.name.value == "repository" and selection.alias
        args = {a.name.value: a.value for a in selection.arguments}
        (ref,) = selection.selection_set.selections if selection.selection_set else ()
        assert isinstance(ref, FieldNode) and ref.name.value == "ref"
        (qualified,) = ref.arguments
        values = (args["owner"], args["name"], qualified.value)
        assert all(isinstance(v, VariableNode) for v in values)  # values travel as variables, never as literals
        found.append((selection.alias.value, *(v.name.value for v in values)))  # type: ignore[attr-defined]
    return found


def asked_for(sent: Sent) -> list[tuple[str, str, str]]:
    """(alias, owner/repo, branch) each alias of a request reads, through its variables."""
    v = sent.variables
    return [(alias, f"{v[o]}/{v[n]}", v[b].removeprefix("refs/heads/")) for alias, o, n, b in aliases(sent.query)]


# --- CodeCommit ---------------------------------------------------------------------------------------------------


def test_given_a_codecommit_branch_when_resolved_then_its_commit_is_returned(
    codecommit: tuple[Any, Stubber], secrets: tuple[Any, Stubber]
) -> None:
    client, stubber = codecommit
    stubber.add_response(
        "get_branch",
        {"branch": {"branchName": "release", "commitId": SHA}},
        {"repositoryName": "payments", "branchName": "release"},
    )

    head = Sources(client, secrets[0]).head(CodeCommitSource(codecommit="payments", branch="release"))

    assert head == SHA


@pytest.mark.parametrize(
    "code",
    [
        "BranchDoesNotExistException",
        "RepositoryDoesNotExistException",
        "InvalidBranchNameException",
        "EncryptionKeyAccessDeniedException",
        "AccessDeniedException",
    ],
)
def test_given_codecommit_refusing_for_good_when_resolved_then_a_permanent_error_names_the_source_and_code(
    codecommit: tuple[Any, Stubber], secrets: tuple[Any, Stubber], code: str
) -> None:
    client, stubber = codecommit
    stubber.add_client_error("get_branch", code, "the service's own words", http_status_code=400)

    with pytest.raises(SourceRejected) as raised:
        Sources(client, secrets[0]).head(CodeCommitSource(codecommit="payments", branch="release"))

    assert str(raised.value) == f"codecommit:payments@release: {code}"


@pytest.mark.parametrize(
    ("code", "status"), [("ThrottlingException", 400), ("ServiceUnavailableException", 503), ("Weird", 500)]
)
def test_given_codecommit_throttling_or_failing_when_resolved_then_a_transient_error_names_the_source_and_code(
    codecommit: tuple[Any, Stubber], secrets: tuple[Any, Stubber], code: str, status: int
) -> None:
    client, stubber = codecommit
    stubber.add_client_error("get_branch", code, "slow down", http_status_code=status)

    with pytest.raises(SourceUnavailable, match=rf"^codecommit:payments@release: {code}$"):
        Sources(client, secrets[0]).head(CodeCommitSource(codecommit="payments", branch="release"))


def test_given_codecommit_unreachable_when_resolved_then_the_error_is_transient() -> None:
    class Unreachable:
        def get_branch(self, **_: Any) -> Any:
            raise EndpointConnectionError(endpoint_url="https://codecommit.us-east-1.amazonaws.com/")

    with pytest.raises(SourceUnavailable, match=r"^codecommit:payments@release: EndpointConnectionError$"):
        Sources(Unreachable(), None).head(CodeCommitSource(codecommit="payments", branch="release"))


class Overlapping:
    """A CodeCommit client whose first `workers` GetBranch calls each wait until `workers` calls are in flight at
    once (a latch, not a clock): a pool smaller than that never gets there, one larger runs past it. It records the
    most calls in flight at once and which threads made them."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.changed = threading.Condition()
        self.in_flight = self.most = 0
        self.open = False
        self.calls: list[tuple[str, str]] = []
        self.threads: set[int] = set()

    def get_branch(self, repositoryName: str, branchName: str) -> dict[str, Any]:
        with self.changed:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            self.calls.append((repositoryName, branchName))
            self.threads.add(threading.get_ident())
            if self.in_flight >= self.workers:
                self.open = True
                self.changed.notify_all()
            # A safety net a correct pool never reaches (however busy the machine): a pool too small fails in 60 s.
            self.open = self.changed.wait_for(lambda: self.open, timeout=60) or True
            self.in_flight -= 1
        return {"branch": {"branchName": branchName, "commitId": sha_of(repositoryName)}}


def test_given_many_codecommit_branches_when_resolved_then_at_most_the_pool_size_are_asked_at_once() -> None:
    client = Overlapping(workers=4)
    sources = [CodeCommitSource(codecommit=f"svc-{i}", branch="release") for i in range(40)]

    heads = Sources(client, None, codecommit_workers=4).heads(sources)

    assert heads == {s: sha_of(s.codecommit) for s in sources}
    assert (client.most, len(client.threads)) == (4, 4)  # concurrent, and never more than the pool


def test_given_the_default_pool_when_codecommit_heads_are_resolved_then_ten_calls_overlap() -> None:
    client = Overlapping(workers=10)  # botocore's default connection pool per client (max_pool_connections)
    sources = [CodeCommitSource(codecommit=f"svc-{i}", branch="release") for i in range(30)]

    Sources(client, None).heads(sources)

    assert (client.most, len(client.threads)) == (10, 10)


def test_given_repeated_codecommit_sources_when_resolved_then_each_branch_is_asked_once(
    codecommit: tuple[Any, Stubber],
) -> None:
    client, stubber = codecommit
    for repo, branch in [("payments", "release"), ("payments", "hotfix"), ("orders", "release")]:
        stubber.add_response(
            "get_branch",
            {"branch": {"branchName": branch, "commitId": sha_of(repo + branch)}},
            {"repositoryName": repo, "branchName": branch},
        )  # a second call for any of them would find no response: Stubber raises
    payments = CodeCommitSource(codecommit="payments", branch="release")
    hotfix = CodeCommitSource(codecommit="payments", branch="hotfix")
    orders = CodeCommitSource(codecommit="orders", branch="release")

    heads = Sources(client, None, codecommit_workers=1).heads([payments, hotfix, payments, orders, hotfix])

    assert heads == {
        payments: sha_of("paymentsrelease"),
        hotfix: sha_of("paymentshotfix"),
        orders: sha_of("ordersrelease"),
    }


def test_given_codecommit_throttled_for_good_when_resolving_then_no_further_branch_is_asked() -> None:
    calls: list[str] = []

    class Throttled:
        def get_branch(self, repositoryName: str, **_: Any) -> Any:
            calls.append(repositoryName)
            raise ClientError({"Error": {"Code": "ThrottlingException"}}, "GetBranch")  # after botocore's retries

    sources = [CodeCommitSource(codecommit=f"svc-{i}", branch="release") for i in range(5)]

    with pytest.raises(SourceUnavailable, match=r"^codecommit:svc-0@release: ThrottlingException$"):
        Sources(Throttled(), None, codecommit_workers=1).heads(sources)

    assert calls == ["svc-0"]  # each further call would wait out its own retries against a service that is down


# --- GitHub: one GraphQL query per batch of branches ----------------------------------------------------------------


def test_given_a_github_branch_when_resolved_then_one_graphql_query_reads_it_through_variables(github: GitHub) -> None:
    head = github.sources().head(ORDERS)

    assert (head, github.emulator.github_requests) == (SHA, ["/graphql"])
    (sent,) = github.sent
    assert sent.variables == {"o0": "acme", "n0": "orders", "b0": "refs/heads/release"}
    assert asked_for(sent) == [("r0", "acme/orders", "release")]
    assert sent.authorization == f"Bearer {TOKEN}"


def test_given_2000_github_services_when_resolved_then_20_queries_of_100_aliases_ask_for_each_branch_once(
    github: GitHub,
) -> None:
    sources = [on_github(f"acme/svc-{i:04d}") for i in range(2000)]
    expected = {s: github.has(s) for s in sources}

    heads = github.sources(timeout=(1.0, 10.0)).heads(sources)  # GitHub's own limit: 10 s per query

    assert heads == expected
    assert GITHUB_BATCH == 100 and github.attempts == 20  # ceil(2000 / 100), one after another
    for n, sent in enumerate(github.sent):
        batch = sources[n * 100 : (n + 1) * 100]
        assert asked_for(sent) == [(f"r{i}", s.github, s.branch) for i, s in enumerate(batch)]
    assert github.most_in_flight == 1  # GitHub asks integrations to avoid concurrent requests


def test_given_a_smaller_batch_size_when_resolved_then_the_last_query_carries_the_rest(github: GitHub) -> None:
    sources = [on_github(f"acme/svc-{i}") for i in range(7)]
    for source in sources:
        github.has(source)

    github.sources(github_batch=3).heads(sources)

    assert [len(aliases(s.query)) for s in github.sent] == [3, 3, 1]


def test_given_repeated_github_sources_when_resolved_then_each_branch_is_one_alias(github: GitHub) -> None:
    a, b = on_github("acme/a"), on_github("acme/b")
    github.has(a), github.has(b)

    heads = github.sources().heads([a, b, a, b, a])

    assert set(heads) == {a, b}
    assert asked_for(github.sent[0]) == [("r0", "acme/a", "release"), ("r1", "acme/b", "release")]


def test_given_sources_read_with_different_tokens_when_resolved_then_each_token_has_its_own_query(
    github: GitHub,
) -> None:
    github.secrets.tokens = {"release-train/team-a": "ghp_a", "release-train/team-b": "ghp_b"}
    a1, b1, a2 = (
        on_github(r, token_secret=f"release-train/team-{t}") for r, t in [("o/a1", "a"), ("o/b1", "b"), ("o/a2", "a")]
    )
    for source in (a1, b1, a2):
        github.has(source)

    github.sources().heads([a1, b1, a2])

    assert [(s.authorization, [repo for _, repo, _ in asked_for(s)]) for s in github.sent] == [
        ("Bearer ghp_a", ["o/a1", "o/a2"]),
        ("Bearer ghp_b", ["o/b1"]),
    ]


def test_given_no_sources_when_resolved_then_nothing_is_asked(github: GitHub) -> None:
    assert (github.sources().heads([]), github.attempts) == ({}, 0)


def test_given_codecommit_and_github_sources_when_resolved_together_then_every_head_comes_back(
    github: GitHub, codecommit: tuple[Any, Stubber]
) -> None:
    client, stubber = codecommit
    stubber.add_response(
        "get_branch",
        {"branch": {"branchName": "release", "commitId": OTHER}},
        {"repositoryName": "payments", "branchName": "release"},
    )
    payments = CodeCommitSource(codecommit="payments", branch="release")

    heads = Sources(client, github.secrets, github.url).heads([ORDERS, payments])

    assert heads == {ORDERS: SHA, payments: OTHER}


# --- GitHub: the branch asked for is the branch resolved -------------------------------------------------------------

BRANCHES = [
    pytest.param("release", id="plain"),
    pytest.param("feature/payments", id="slash"),
    pytest.param("fix#42", id="hash"),
    pytest.param('say-"hi"', id="double-quote"),
    pytest.param('x") { oid } r9: repository(owner: "evil", name: "x") { id', id="graphql-injection"),
    pytest.param("$b0{}", id="graphql-syntax"),
    pytest.param("100%25", id="percent"),
    pytest.param("ünïcode/分支", id="unicode"),
]
UNVALIDATED = [  # refused by fleet validation; the adapter still never lets them change the query
    pytest.param("back\\slash", id="backslash"),
    pytest.param("line\nbreak", id="newline"),
]


@pytest.mark.parametrize("branch", BRANCHES + UNVALIDATED)
def test_given_a_branch_name_with_query_syntax_when_resolved_then_exactly_that_branch_is_resolved(
    github: GitHub, branch: str
) -> None:
    # Decoys: what a client splicing the name into the query (or a URL) might resolve instead.
    for decoy in {branch.split("#", 1)[0], branch.split('"', 1)[0], branch.replace("%25", "%"), "main"} - {branch}:
        github.emulator.github_heads[("acme/orders", decoy)] = OTHER
    github.emulator.github_heads[("acme/orders", branch)] = SHA

    head = github.sources().head(on_github("acme/orders", branch))

    assert head == SHA
    (sent,) = github.sent
    assert sent.variables["b0"] == f"refs/heads/{branch}"
    assert branch not in sent.query and "acme" not in sent.query  # names are variables, never query text


# --- GitHub: what GitHub says about one branch in a query -------------------------------------------------------------


def test_given_a_branch_the_repository_does_not_have_when_resolved_then_permanent_naming_the_source(
    github: GitHub,
) -> None:
    with pytest.raises(
        SourceRejected, match=r"^github:acme/orders@nope: no such branch \(GitHub answered ref: null\)$"
    ):
        github.sources().head(on_github("acme/orders", "nope"))


def test_given_a_repository_github_does_not_have_when_resolved_then_permanent_naming_the_source(github: GitHub) -> None:
    with pytest.raises(SourceRejected) as raised:
        github.sources().head(on_github("acme/gone"))

    assert str(raised.value) == "github:acme/gone@release: no such repository, or the token cannot see it (NOT_FOUND)"


def test_given_a_missing_branch_among_others_when_resolved_then_the_error_names_that_source_after_one_query(
    github: GitHub,
) -> None:
    first, missing, last = on_github("acme/a"), on_github("acme/b", "gone"), on_github("acme/c")
    github.has(first), github.has(last), github.has(on_github("acme/b"))

    with pytest.raises(SourceRejected, match=r"^github:acme/b@gone: no such branch"):
        github.sources().heads([first, missing, last])

    assert github.attempts == 1


def test_given_a_repository_the_token_may_not_read_when_resolved_then_permanent(github: GitHub) -> None:
    github.script(403)  # no rate-limit headers: GitHub reports it beside the other branches, type FORBIDDEN

    with pytest.raises(
        SourceRejected, match=r"^github:acme/orders@release: the GitHub token may not read .* \(FORBIDDEN\)$"
    ):
        github.sources().head(ORDERS)

    assert (github.attempts, github.waits) == (1, [])


def test_given_a_200_without_a_commit_when_resolved_then_transient_not_a_crash(
    loopback: Loopback,
) -> None:
    loopback.route("POST", "/graphql", 200, {"data": {"r0": {"ref": {"target": {}}}}})

    with pytest.raises(SourceUnavailable, match=r"^github:acme/orders@release: GitHub answered without a commit sha$"):
        Sources(None, Tokens(), loopback.base_url).head(ORDERS)


def test_given_an_error_github_does_not_explain_when_resolved_then_transient_naming_its_type(
    loopback: Loopback,
) -> None:
    # "Other resource limits": GitHub may cut a query off and answer part of it, with an error.
    loopback.route("POST", "/graphql", 200, {"data": None, "errors": [{"type": "RESOURCE_LIMITS_EXCEEDED"}]})

    with pytest.raises(SourceUnavailable, match=r"GitHub answered without this branch \(RESOURCE_LIMITS_EXCEEDED\)$"):
        Sources(None, Tokens(), loopback.base_url).head(ORDERS)


def test_given_several_failures_when_resolved_then_the_first_rejected_source_is_raised_before_any_unavailable(
    loopback: Loopback,
) -> None:
    loopback.route(
        "POST",
        "/graphql",
        200,
        {
            "data": {"r0": None, "r1": {"ref": None}, "r2": None},
            "errors": [{"type": "SERVICE_UNAVAILABLE", "path": ["r0"]}, {"type": "NOT_FOUND", "path": ["r2"]}],
        },
    )
    flaky, missing, gone = on_github("acme/a"), on_github("acme/b"), on_github("acme/c")

    with pytest.raises(SourceRejected, match=r"^github:acme/b@release: no such branch"):
        Sources(None, Tokens(), loopback.base_url).heads([flaky, missing, gone])


# --- GitHub: a whole query refused ------------------------------------------------------------------------------------


def test_given_github_refusing_the_token_when_resolved_then_permanent_after_one_attempt(github: GitHub) -> None:
    github.script(401)

    with pytest.raises(SourceRejected) as raised:
        github.sources().head(ORDERS)

    assert str(raised.value) == "github:acme/orders@release: the GitHub token is missing, invalid or expired (HTTP 401)"
    assert (github.attempts, github.waits) == (1, [])


def test_given_a_refused_token_when_more_queries_would_use_it_then_they_are_not_sent(github: GitHub) -> None:
    sources = [ORDERS, on_github("acme/b"), on_github("acme/c")]
    github.script(401)

    with pytest.raises(SourceRejected, match=r"^github:acme/orders@release: .*HTTP 401"):
        github.sources(github_batch=1).heads(sources)

    assert github.attempts == 1


def test_given_a_source_without_a_token_when_resolved_then_permanent_without_a_request(github: GitHub) -> None:
    with pytest.raises(SourceRejected, match=r"^github:acme/orders@release: GitHub's GraphQL API needs a token"):
        github.sources().head(on_github("acme/orders", token_secret=None))

    assert github.attempts == 0


def test_given_the_emulated_github_when_asked_without_a_token_then_it_answers_401_as_github_does(
    github: GitHub,
) -> None:
    answer = requests.post(f"{github.url}/graphql", json={"query": "{ __typename }"}, timeout=5)

    assert (answer.status_code, answer.json()["message"]) == (401, "This endpoint requires you to be authenticated.")


# --- GitHub: transient errors are retried within the budget --------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_given_a_5xx_then_a_200_when_resolved_then_the_head_comes_after_one_retry(github: GitHub, status: int) -> None:
    github.script(status, 200)

    head = github.sources().head(ORDERS)

    assert (head, github.attempts) == (SHA, 2)
    assert github.waits == []  # urllib3's backoff before the first retry is 0


def test_given_github_failing_every_time_when_resolved_then_transient_after_retries_with_backoff(
    github: GitHub,
) -> None:
    github.script(502, 502, 502, 502)

    with pytest.raises(SourceUnavailable, match=r"^github:acme/orders@release: GitHub failed \(HTTP 502\) after 3"):
        github.sources(retries=2, backoff_factor=0.5).head(ORDERS)

    assert github.attempts == 3
    assert github.waits == [1.0]  # backoff_factor * 2 ** (n - 1): 0, then 1.0


def test_given_a_query_failing_for_now_when_more_batches_remain_then_no_further_query_is_sent(github: GitHub) -> None:
    later = [on_github("acme/b"), on_github("acme/c")]
    for source in later:
        github.has(source)
    github.script(502, 502, 502)

    with pytest.raises(SourceUnavailable, match=r"^github:acme/orders@release: GitHub failed \(HTTP 502\)"):
        github.sources(github_batch=1).heads([ORDERS, *later])

    assert github.attempts == 3  # the first query's attempts; each later query would wait out its own retries


def test_given_github_not_answering_in_time_when_resolved_then_transient_after_every_attempt(
    github: GitHub,
) -> None:
    github.script(*[GitHubAnswer(delay=3600)] * 3)  # held until the emulator stops: the 0.2 s read timeout fires

    with pytest.raises(SourceUnavailable, match=r"^github:acme/orders@release: GitHub did not answer in time"):
        github.sources(retries=2).head(ORDERS)

    assert github.attempts == 3


def test_given_one_timeout_then_an_answer_when_resolved_then_the_head_is_returned(github: GitHub) -> None:
    github.script(GitHubAnswer(delay=3600), 200)

    assert (github.sources().head(ORDERS), github.attempts) == (SHA, 2)


def test_given_a_dropped_connection_then_an_answer_when_resolved_then_the_head_is_returned(github: GitHub) -> None:
    github.script(GitHubAnswer(drop=True), 200)

    assert (github.sources().head(ORDERS), github.attempts) == (SHA, 2)


def test_given_github_unreachable_when_resolved_then_transient_naming_the_source() -> None:
    with loopback_server() as gone:
        url = gone.base_url  # the server is shut down when the block ends: the port refuses connections
    waits: list[float] = []

    with pytest.raises(SourceUnavailable, match=r"^github:acme/orders@release: GitHub could not be reached \("):
        Sources(None, Tokens(), url, sleep=waits.append).head(ORDERS)

    assert waits == [1.0]  # retried like any transient error


# --- GitHub: rate limits ("Rate limits and query limits for the GraphQL API > Exceeding the rate limit") -------------


def test_given_a_429_with_a_short_retry_after_when_resolved_then_it_waits_that_long_and_resolves(
    github: GitHub,
) -> None:
    github.script(GitHubAnswer(status=429, retry_after=3), 200)

    head = github.sources().head(ORDERS)

    assert (head, github.attempts, github.waits) == (SHA, 2, [3.0])


def test_given_a_retry_after_over_the_budget_when_resolved_then_transient_at_once_without_sleeping(
    github: GitHub,
) -> None:
    github.script(GitHubAnswer(status=429, retry_after=300), 200)

    with pytest.raises(SourceUnavailable, match=r"rate limited by GitHub \(HTTP 429\): it asks to wait 300s, over"):
        github.sources(wait_budget=20).head(ORDERS)

    assert (github.attempts, github.waits) == (1, [])


def test_given_a_larger_budget_when_the_server_asks_to_wait_within_it_then_it_waits(github: GitHub) -> None:
    github.script(GitHubAnswer(status=429, retry_after=300), 200)

    head = github.sources(wait_budget=600).head(ORDERS)

    assert (head, github.waits) == (SHA, [300.0])


def test_given_waits_adding_up_over_the_budget_when_resolved_then_transient_after_the_waits_that_fit(
    github: GitHub,
) -> None:
    github.script(GitHubAnswer(status=429, retry_after=15), GitHubAnswer(status=429, retry_after=15), 200)

    with pytest.raises(SourceUnavailable, match="rate limited"):
        github.sources(wait_budget=20).head(ORDERS)

    assert (github.attempts, github.waits) == (2, [15.0])


def test_given_a_403_with_no_requests_remaining_when_resolved_then_it_waits_until_the_reset(github: GitHub) -> None:
    github.script(GitHubAnswer.rate_limited(status=403, reset_after=5), 200)

    head = github.sources().head(ORDERS)

    assert (head, github.attempts, github.waits) == (SHA, 2, [5.0])  # x-ratelimit-reset - now, not a backoff


def test_given_a_rate_limit_resetting_after_the_budget_when_resolved_then_transient_without_sleeping(
    github: GitHub,
) -> None:
    github.script(GitHubAnswer.rate_limited(status=403, reset_after=1800))

    with pytest.raises(SourceUnavailable, match=r"rate limited by GitHub \(HTTP 403\): it asks to wait 1800s, over"):
        github.sources().head(ORDERS)

    assert (github.attempts, github.waits) == (1, [])


def test_given_a_secondary_rate_limit_without_headers_when_resolved_then_a_minute_is_over_budget(
    github: GitHub,
) -> None:
    github.script(429)  # "Otherwise, wait for at least one minute before retrying"

    with pytest.raises(SourceUnavailable, match="it asks to wait 60s, over this call's 20s budget"):
        github.sources(wait_budget=20).head(ORDERS)

    assert github.waits == []


def test_given_the_primary_rate_limit_reported_in_a_200_when_resolved_then_transient_with_the_reset_wait(
    github: GitHub,
) -> None:
    # "If you exceed your primary rate limit, the response status will still be 200, but you will receive an error
    # message, and the value of the x-ratelimit-remaining header will be 0."
    github.script(GitHubAnswer.rate_limited(status=200, reset_after=30), 200)

    with pytest.raises(SourceUnavailable) as raised:
        github.sources().head(ORDERS)

    assert str(raised.value) == (
        "github:acme/orders@release: rate limited by GitHub (HTTP 200, RATE_LIMITED): it asks to wait 30s"
    )
    assert (github.attempts, github.waits) == (1, [])


def test_given_rate_limits_until_the_retries_run_out_when_resolved_then_transient_after_every_attempt(
    github: GitHub,
) -> None:
    github.script(*[GitHubAnswer(status=429, retry_after=1)] * 3)

    with pytest.raises(SourceUnavailable, match=r"\(HTTP 429\) after 3 attempts: it asks to wait 1s$"):
        github.sources(retries=2).head(ORDERS)

    assert github.waits == [1.0, 1.0]


def test_given_a_retry_after_as_an_http_date_when_planned_then_it_counts_from_the_clock() -> None:
    retry = _BudgetedRetry(total=2, clock=lambda: 1_445_412_470.0)  # 2015-10-21T07:27:50Z

    assert retry.requested_wait(503, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 10.0


# --- GitHub: the endpoint and the token ------------------------------------------------------------------------------


def test_given_a_token_secret_when_resolving_on_github_then_the_query_is_posted_with_the_token_as_a_bearer_header(
    loopback: Loopback, secrets: tuple[Any, Stubber]
) -> None:
    loopback.route("POST", "/graphql", 200, {"data": {"r0": {"ref": {"target": {"oid": SHA}}}}})
    client, stubber = secrets
    stubber.add_response(
        "get_secret_value", {"SecretString": TOKEN + "\n", "Name": TOKEN_SECRET}, {"SecretId": TOKEN_SECRET}
    )

    head = Sources(None, client, loopback.base_url + "/").head(ORDERS)

    (sent,) = loopback.requests
    assert (head, sent.method, sent.path, sent.headers["Authorization"]) == (SHA, "POST", "/graphql", f"Bearer {TOKEN}")
    assert json.loads(sent.body)["variables"] == {"o0": "acme", "n0": "orders", "b0": "refs/heads/release"}


def test_given_a_github_enterprise_server_api_url_when_resolving_then_its_graphql_endpoint_is_asked(
    loopback: Loopback,
) -> None:
    loopback.route("POST", "/api/graphql", 200, {"data": {"r0": {"ref": {"target": {"oid": SHA}}}}})

    head = Sources(None, Tokens(), loopback.base_url + "/api/v3").head(ORDERS)  # REST root: https://HOST/api/v3

    assert (head, [r.path for r in loopback.requests]) == (SHA, ["/api/graphql"])


def test_given_the_same_token_secret_twice_when_resolving_then_the_secret_is_read_once(github: GitHub) -> None:
    sources = github.sources()

    assert [sources.head(ORDERS), sources.head(ORDERS)] == [SHA, SHA]
    assert github.secrets.reads == [TOKEN_SECRET]


def test_given_a_secret_max_age_of_zero_when_resolving_twice_then_the_secret_is_read_each_time(github: GitHub) -> None:
    sources = github.sources(secret_max_age=0)

    sources.head(ORDERS)
    sources.head(ORDERS)

    assert github.secrets.reads == [TOKEN_SECRET, TOKEN_SECRET]


@pytest.mark.parametrize("url", ["http://github.example.com/api/v3", "ftp://127.0.0.1"])
def test_given_a_github_url_that_is_not_https_when_a_token_is_needed_then_the_token_is_never_sent(url: str) -> None:
    tokens = Tokens()

    with pytest.raises(SourceRejected, match="a GitHub token is sent over https only"):
        Sources(None, tokens, url).head(ORDERS)

    assert tokens.reads == []


def test_given_a_missing_token_secret_when_resolving_then_permanent_naming_the_secret_and_no_request(
    github: GitHub,
) -> None:
    with mock_aws():
        sources = Sources(None, boto3.client("secretsmanager", region_name="us-east-1"), github.url)

        with pytest.raises(SourceRejected) as raised:
            sources.head(ORDERS)

    assert str(raised.value) == (
        f"github:acme/orders@release: GitHub token secret {TOKEN_SECRET} not found (ResourceNotFoundException)"
    )
    assert github.attempts == 0


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("AccessDeniedException", SourceRejected),
        ("DecryptionFailure", SourceRejected),
        ("ThrottlingException", SourceUnavailable),
        ("InternalServiceError", SourceUnavailable),
    ],
)
def test_given_an_unreadable_token_secret_when_resolving_then_the_error_kind_follows_the_code(
    github: GitHub, secrets: tuple[Any, Stubber], code: str, kind: type[SourceError]
) -> None:
    secrets[1].add_client_error("get_secret_value", code, "Secrets Manager's own words")

    with pytest.raises(kind) as raised:
        Sources(None, secrets[0], github.url).head(ORDERS)

    assert str(raised.value) == f"github:acme/orders@release: GitHub token secret {TOKEN_SECRET} unreadable ({code})"
    assert type(raised.value) is kind


@pytest.mark.parametrize(
    "answers",
    [
        pytest.param([401], id="401"),
        pytest.param([403], id="403"),
        pytest.param([404], id="404"),
        pytest.param([500] * 3, id="500"),
        pytest.param([GitHubAnswer(status=429, retry_after=300)], id="rate-limit"),
        pytest.param([GitHubAnswer.rate_limited(status=200)], id="rate-limit-in-a-200"),
        pytest.param([GitHubAnswer(delay=3600)] * 3, id="timeout"),
        pytest.param([GitHubAnswer(drop=True)] * 3, id="dropped"),
    ],
)
def test_given_any_github_failure_when_resolving_with_a_token_then_no_token_url_or_header_is_in_the_error(
    github: GitHub, answers: list[int | GitHubAnswer]
) -> None:
    github.script(*answers)

    with pytest.raises(SourceError) as raised:
        github.sources().head(ORDERS)

    error = raised.value
    text = f"{error} {error!r} {error.args}"
    for secret in (TOKEN, github.url, "127.0.0.1", "Bearer", "x-ratelimit", "/graphql"):
        assert secret not in text
    # And nothing chained that a traceback would print: requests' exceptions carry the URL.
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_given_a_token_with_a_line_break_when_resolving_then_it_is_refused_and_never_shown(github: GitHub) -> None:
    # requests refuses the header with the header's value in its message ("Invalid ... header value: 'Bearer ...'").
    github.secrets.tokens = {TOKEN_SECRET: f"{TOKEN}\nX-Injected: 1"}

    with pytest.raises(SourceRejected) as raised:
        github.sources().head(ORDERS)

    error = raised.value
    assert TOKEN not in f"{error!r}"
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)  # nothing chained
    assert github.attempts == 0


def test_given_no_secrets_client_when_a_token_is_needed_then_permanent_naming_the_secret(github: GitHub) -> None:
    with pytest.raises(SourceRejected, match=rf"GitHub token secret {TOKEN_SECRET} cannot be read"):
        Sources(None, None, github.url).head(ORDERS)


def test_given_the_two_error_kinds_then_both_are_source_errors_and_only_unavailable_is_transient() -> None:
    assert issubclass(SourceUnavailable, SourceError) and issubclass(SourceRejected, SourceError)
    assert (SourceUnavailable.transient, SourceRejected.transient) == (True, False)


@pytest.mark.parametrize(
    ("source", "text"),
    [
        (CodeCommitSource(codecommit="payments", branch="release"), "codecommit:payments@release"),
        (GitHubSource(github="acme/orders", token_secret=TOKEN_SECRET), "github:acme/orders@main"),
    ],
)
def test_given_a_source_when_described_for_release_notes_then_kind_repo_and_branch_are_named(
    source: CodeCommitSource | GitHubSource, text: str
) -> None:
    assert describe(source) == text


# --- the sandbox's GitHub answers as GitHub does ------------------------------------------------------------------


def _post(github: GitHub, query: str, variables: dict[str, str] | None = None) -> requests.Response:
    return requests.post(
        f"{github.url}/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )


HEAD_QUERY = (
    "query($o: String!, $n: String!, $b: String!) "
    "{ r0: repository(owner: $o, name: $n) { ref(qualifiedName: $b) { target { oid } } } }"
)
ORDERS_VARIABLES = {"o": "acme", "n": "orders", "b": "refs/heads/release"}


def test_given_a_script_when_it_is_used_up_then_the_emulator_answers_with_the_head_again(github: GitHub) -> None:
    github.script(503)

    answers = [_post(github, HEAD_QUERY, ORDERS_VARIABLES) for _ in "ab"]

    assert [a.status_code for a in answers] == [503, 200]
    assert answers[1].json() == {"data": {"r0": {"ref": {"target": {"oid": SHA}}}}}
    assert github.emulator.github_answers == [("acme/orders", "release", 503), ("acme/orders", "release", 200)]


def test_given_a_scripted_rate_limit_when_answered_then_it_carries_githubs_headers_on_the_virtual_clock(
    github: GitHub,
) -> None:
    github.script(GitHubAnswer.rate_limited(status=429, reset_after=30))

    answer = _post(github, HEAD_QUERY, ORDERS_VARIABLES)

    headers = answer.headers
    assert (answer.status_code, headers["x-ratelimit-remaining"], headers["x-ratelimit-reset"]) == (
        429,
        "0",
        str(int(NOW) + 30),
    )
    assert headers["x-ratelimit-resource"] == "graphql"
    assert answer.json()["message"].startswith("API rate limit exceeded")


def test_given_a_missing_repository_when_the_emulator_answers_then_it_is_null_with_a_not_found_error_at_its_alias(
    github: GitHub,
) -> None:
    answer = _post(github, HEAD_QUERY, {**ORDERS_VARIABLES, "n": "gone"})

    body = answer.json()
    assert (answer.status_code, body["data"], body["errors"][0]["type"], body["errors"][0]["path"]) == (
        200,
        {"r0": None},
        "NOT_FOUND",
        ["r0"],
    )


@pytest.mark.parametrize(
    ("query", "words"),
    [
        pytest.param(
            '{ repository(owner: "acme", name: "orders") { defaultBranch } }', "Cannot query field", id="no-such-field"
        ),
        pytest.param(
            '{ r0: repository(owner: $o, name: "orders") { name } }',
            "Variable '$o' is not defined",
            id="undeclared-variable",
        ),
        pytest.param(
            'query($o: Boolean!) { repository(owner: $o, name: "x") { name } }',
            "Variable '$o' of type 'Boolean!'",
            id="mistyped-variable",
        ),
        pytest.param('{ repository(owner: "acme" { name } }', "Syntax Error", id="syntax"),
    ],
)
def test_given_a_query_github_would_refuse_when_sent_to_the_emulator_then_it_is_refused_in_a_200(
    github: GitHub, query: str, words: str
) -> None:
    answer = _post(github, query, {"o": "acme"})

    body = answer.json()
    assert answer.status_code == 200 and "data" not in body
    assert words in body["errors"][0]["message"]


# --- the Lambda's time: no request starts, and no retry waits, past `within` -----------------------------------------


class Ticking:
    """A clock that moves `step` seconds each time a branch is asked (the adapter reads it; nothing sleeps)."""

    def __init__(self, step: float) -> None:
        self.now, self.step = NOW, step

    def __call__(self) -> float:
        return self.now

    def tick(self) -> None:
        self.now += self.step


def test_given_codecommit_calls_taking_time_when_the_limit_is_reached_then_no_further_branch_is_asked() -> None:
    clock, calls = Ticking(10.0), []

    class Slow:
        def get_branch(self, repositoryName: str, **_: Any) -> Any:
            calls.append(repositoryName)
            clock.tick()
            return {"branch": {"commitId": sha_of(repositoryName)}}

    sources = [CodeCommitSource(codecommit=f"svc-{i}", branch="release") for i in range(4)]

    with pytest.raises(SourceUnavailable, match=r"^codecommit:svc-2@release: not asked: PlanRelease ran out of time"):
        Sources(Slow(), None, codecommit_workers=1, clock=clock).heads(sources, within=20.0)

    assert calls == ["svc-0", "svc-1"]  # asked at +0 s and +10 s; at +20 s the limit is reached (not "over")


def test_given_no_limit_when_codecommit_calls_take_time_then_every_branch_is_asked() -> None:
    clock, calls = Ticking(10.0), []

    class Slow:
        def get_branch(self, repositoryName: str, **_: Any) -> Any:
            calls.append(repositoryName)
            clock.tick()
            return {"branch": {"commitId": sha_of(repositoryName)}}

    sources = [CodeCommitSource(codecommit=f"svc-{i}", branch="release") for i in range(4)]

    assert len(Sources(Slow(), None, codecommit_workers=1, clock=clock).heads(sources)) == 4
    assert len(calls) == 4


def test_given_github_queries_taking_time_when_the_limit_is_reached_then_the_next_query_is_not_sent(
    github: GitHub,
) -> None:
    clock = Ticking(30.0)
    batch = [on_github(f"acme/svc-{i}") for i in range(3)]
    for source in batch:
        github.has(source)
    adapter = github.sources(github_batch=1, clock=clock)
    sent = adapter._github_query

    def query_taking_time(*args: Any) -> Any:
        clock.tick()
        return sent(*args)

    adapter._github_query = query_taking_time  # type: ignore[method-assign]

    with pytest.raises(SourceUnavailable, match=r"^github:acme/svc-2@release: not asked: PlanRelease ran out of time"):
        adapter.heads(batch, within=45.0)

    assert github.attempts == 2


def test_given_a_retry_after_inside_the_budget_but_past_the_limit_when_resolved_then_transient_without_sleeping(
    github: GitHub,
) -> None:
    github.script(GitHubAnswer(status=429, retry_after=15), 200)

    with pytest.raises(SourceUnavailable, match="rate limited"):
        github.sources(wait_budget=20).heads([ORDERS], within=10.0)

    assert (github.attempts, github.waits) == (1, [])


def test_given_a_limit_for_one_call_when_the_next_call_has_none_then_the_full_wait_budget_is_back(
    github: GitHub,
) -> None:
    adapter = github.sources(wait_budget=20)
    github.script(GitHubAnswer(status=429, retry_after=15))  # one attempt: the 15 s wait is past the limit
    with pytest.raises(SourceUnavailable):
        adapter.heads([ORDERS], within=10.0)

    github.script(GitHubAnswer(status=429, retry_after=15), 200)

    assert adapter.heads([ORDERS]) == {ORDERS: SHA}
    assert github.waits == [15.0]
