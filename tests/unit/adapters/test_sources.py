"""Resolving release branches: CodeCommit through boto3 (Stubber: moto has no GetBranch), GitHub over real HTTP.

GitHub is the sandbox's loopback stand-in (`trainctl.sandbox.sources`), scripted per (repo, branch), so the adapter
and the emulator the sandbox runs it against are held to the same contract. No test waits on the wall clock: the
adapter's sleep is a list that records the waits it asks for, its clock a fixed instant; only the timeout tests let a
0.2 s read timeout pass, against a server that does not answer until the test ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import boto3
import pytest
import requests
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber
from moto import mock_aws

from release_train.adapters.sources import (
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
ORDERS = GitHubSource(github="acme/orders", branch="release")


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
class GitHub:
    """The emulated GitHub and an adapter pointed at it, with its waits recorded instead of slept."""

    emulator: EmulatedSources
    url: str
    secrets: Any
    waits: list[float] = field(default_factory=list)

    def sources(self, **kwargs: Any) -> Sources:
        options: dict[str, Any] = {"sleep": self.waits.append, "clock": lambda: NOW, "timeout": (1.0, 0.2)}
        return Sources(None, self.secrets, self.url, **{**options, **kwargs})

    def script(self, *answers: int | GitHubAnswer, branch: str = "release") -> None:
        self.emulator.script_github("acme/orders", branch, *answers)

    @property
    def attempts(self) -> int:
        return len(self.emulator.github_requests)


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch, secrets: tuple[Any, Stubber]) -> Iterator[GitHub]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    world = SimpleNamespace(clock=SimpleNamespace(now=lambda: datetime.fromtimestamp(NOW, UTC)))
    emulator = EmulatedSources(world)  # type: ignore[arg-type]
    url = emulator.start_github()
    emulator.github_heads[("acme/orders", "release")] = SHA
    try:
        yield GitHub(emulator, url, secrets[0])
    finally:
        emulator.stop_github()


def _with_token(secrets: Any, stubber: Stubber, token: str = TOKEN) -> GitHubSource:
    stubber.add_response("get_secret_value", {"SecretString": token}, {"SecretId": TOKEN_SECRET})
    return GitHubSource(github="acme/orders", branch="release", token_secret=TOKEN_SECRET)


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


# --- GitHub: the branch asked for is the branch resolved -------------------------------------------------------------

BRANCHES = [
    pytest.param("release", id="plain"),
    pytest.param("feature/payments", id="slash"),
    pytest.param("fix#42", id="hash"),
    pytest.param("release/2026#1", id="slash-and-hash"),
    pytest.param("100%25", id="percent"),
    pytest.param("a+b&c=d;e", id="query-characters"),
    pytest.param("ünïcode/分支", id="unicode"),
]
UNVALIDATED = [  # refused by fleet validation; the adapter still never lets them change the request
    pytest.param("with space", id="space"),
    pytest.param("what?ref=main", id="question-mark"),
]


@pytest.mark.parametrize("branch", BRANCHES + UNVALIDATED)
def test_given_a_branch_name_with_url_syntax_when_resolved_then_exactly_that_branch_is_resolved(
    github: GitHub, branch: str
) -> None:
    # Decoys: the branch a client that did not encode would ask for ('#' and '?' cut the path, '%25' decodes).
    for decoy in {branch.split("#", 1)[0], branch.split("?", 1)[0], branch.replace("%25", "%"), "main"} - {branch}:
        github.emulator.github_heads[("acme/orders", decoy)] = OTHER
    github.emulator.github_heads[("acme/orders", branch)] = SHA
    source = GitHubSource.model_construct(github="acme/orders", branch=branch, token_secret=None)

    head = github.sources().head(source)

    assert head == SHA
    # One path segment per value, '/' included: GitHub REST "Get a branch", /repos/{owner}/{repo}/branches/{branch}.
    assert github.emulator.github_requests == [f"/repos/acme/orders/branches/{quote(branch, safe='')}"]


@pytest.mark.parametrize("repo", ["acme/..", "acme/.", "../orders"])
def test_given_a_dot_segment_as_owner_or_repository_when_resolved_then_it_is_rejected_without_a_request(
    github: GitHub, repo: str
) -> None:
    with pytest.raises(SourceRejected, match="not a GitHub repository and branch name"):
        # fleet validation refuses these first; the adapter does not rely on it (model_construct skips validation)
        github.sources().head(GitHubSource.model_construct(github=repo, branch="release", token_secret=None))

    assert github.attempts == 0


# --- GitHub: permanent errors are never retried ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "words"),
    [(401, "token is missing, invalid or expired"), (403, "may not read this repository"), (404, "no such")],
)
def test_given_github_refusing_when_resolved_then_a_permanent_error_after_one_attempt(
    github: GitHub, status: int, words: str
) -> None:
    github.script(status)

    with pytest.raises(SourceRejected) as raised:
        github.sources().head(ORDERS)

    assert str(raised.value).startswith("github:acme/orders@release: ") and words in str(raised.value)
    assert f"HTTP {status}" in str(raised.value)
    assert (github.attempts, github.waits) == (1, [])


def test_given_an_unknown_branch_when_resolved_then_a_permanent_error_names_the_source(github: GitHub) -> None:
    with pytest.raises(SourceRejected, match=r"^github:acme/orders@nope: no such repository or branch"):
        github.sources().head(GitHubSource(github="acme/orders", branch="nope"))


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
    github.script(500, 500, 500, 500)

    with pytest.raises(SourceUnavailable, match=r"^github:acme/orders@release: GitHub failed \(HTTP 500\) after 3"):
        github.sources(retries=2, backoff_factor=0.5).head(ORDERS)

    assert github.attempts == 3
    assert github.waits == [1.0]  # backoff_factor * 2 ** (n - 1): 0, then 1.0


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


def test_given_github_unreachable_when_resolved_then_transient_naming_the_source(
    secrets: tuple[Any, Stubber],
) -> None:
    with loopback_server() as gone:
        url = gone.base_url  # the server is shut down when the block ends: the port refuses connections
    waits: list[float] = []

    with pytest.raises(SourceUnavailable, match=r"^github:acme/orders@release: GitHub could not be reached \("):
        Sources(None, secrets[0], url, sleep=waits.append).head(ORDERS)

    assert waits == [1.0]  # retried like any transient error


# --- GitHub: rate limits (GitHub REST, "Troubleshooting the REST API > Rate limit errors") ----------------------------


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


def test_given_a_retry_after_as_an_http_date_when_planned_then_it_counts_from_the_clock() -> None:
    retry = _BudgetedRetry(total=2, clock=lambda: 1_445_412_470.0)  # 2015-10-21T07:27:50Z

    assert retry.requested_wait(503, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 10.0


# --- GitHub: the token --------------------------------------------------------------------------------------------


def test_given_a_token_secret_when_resolving_on_github_then_the_token_is_sent_as_a_bearer_header(
    loopback: Loopback, secrets: tuple[Any, Stubber]
) -> None:
    loopback.route("GET", "/repos/acme/orders/branches/release", 200, {"commit": {"sha": SHA}})
    client, stubber = secrets
    stubber.add_response(
        "get_secret_value", {"SecretString": TOKEN + "\n", "Name": TOKEN_SECRET}, {"SecretId": TOKEN_SECRET}
    )
    source = GitHubSource(github="acme/orders", branch="release", token_secret=TOKEN_SECRET)

    Sources(None, client, loopback.base_url + "/").head(source)

    sent = loopback.requests[0].headers
    assert (sent["Authorization"], sent["X-GitHub-Api-Version"]) == (f"Bearer {TOKEN}", "2022-11-28")


def test_given_the_same_token_secret_twice_when_resolving_then_the_secret_is_read_once(
    github: GitHub, secrets: tuple[Any, Stubber]
) -> None:
    source = _with_token(*secrets)  # a second read would find no stubbed response
    sources = github.sources()

    assert [sources.head(source), sources.head(source)] == [SHA, SHA]


def test_given_a_secret_max_age_of_zero_when_resolving_twice_then_the_secret_is_read_each_time(
    github: GitHub, secrets: tuple[Any, Stubber]
) -> None:
    source = _with_token(*secrets)
    _with_token(*secrets)
    sources = github.sources(secret_max_age=0)

    sources.head(source)
    sources.head(source)

    secrets[1].assert_no_pending_responses()


def test_given_no_token_secret_when_resolving_on_github_then_no_authorization_header_is_sent(
    loopback: Loopback, secrets: tuple[Any, Stubber]
) -> None:
    loopback.route("GET", "/repos/acme/orders/branches/release", 200, {"commit": {"sha": SHA}})

    Sources(None, secrets[0], loopback.base_url).head(ORDERS)

    assert "Authorization" not in loopback.requests[0].headers


@pytest.mark.parametrize("url", ["http://github.example.com/api/v3", "ftp://127.0.0.1"])
def test_given_a_github_url_that_is_not_https_when_a_token_is_needed_then_the_token_is_never_sent(
    secrets: tuple[Any, Stubber], url: str
) -> None:
    source = GitHubSource(github="acme/orders", branch="release", token_secret=TOKEN_SECRET)

    with pytest.raises(SourceRejected, match="a GitHub token is sent over https only"):
        Sources(None, secrets[0], url).head(source)  # no secret read is stubbed: none is made


def test_given_rate_limits_until_the_retries_run_out_when_resolved_then_transient_after_every_attempt(
    github: GitHub,
) -> None:
    github.script(*[GitHubAnswer(status=429, retry_after=1)] * 3)

    with pytest.raises(SourceUnavailable, match=r"\(HTTP 429\) after 3 attempts: it asks to wait 1s$"):
        github.sources(retries=2).head(ORDERS)

    assert github.waits == [1.0, 1.0]


def test_given_a_missing_token_secret_when_resolving_then_permanent_naming_the_secret_and_no_request(
    github: GitHub,
) -> None:
    with mock_aws():
        sources = Sources(None, boto3.client("secretsmanager", region_name="us-east-1"), github.url)
        source = GitHubSource(github="acme/orders", branch="release", token_secret=TOKEN_SECRET)

        with pytest.raises(SourceRejected) as raised:
            sources.head(source)

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
    source = GitHubSource(github="acme/orders", branch="release", token_secret=TOKEN_SECRET)

    with pytest.raises(kind) as raised:
        github.sources().head(source)

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
        pytest.param([GitHubAnswer(delay=3600)] * 3, id="timeout"),
        pytest.param([GitHubAnswer(drop=True)] * 3, id="dropped"),
    ],
)
def test_given_any_github_failure_when_resolving_with_a_token_then_no_token_url_or_header_is_in_the_error(
    github: GitHub, secrets: tuple[Any, Stubber], answers: list[int | GitHubAnswer]
) -> None:
    github.script(*answers)
    source = _with_token(*secrets)

    with pytest.raises(SourceError) as raised:
        github.sources().head(source)

    error = raised.value
    text = f"{error} {error!r} {error.args}"
    for secret in (TOKEN, github.url, "127.0.0.1", "Bearer", "x-ratelimit", "/repos/"):
        assert secret not in text
    # And nothing chained that a traceback would print: requests' exceptions carry the URL.
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_given_a_token_with_a_line_break_when_resolving_then_it_is_refused_and_never_shown(
    github: GitHub, secrets: tuple[Any, Stubber]
) -> None:
    # requests refuses the header with the header's value in its message ("Invalid ... header value: 'Bearer ...'").
    source = _with_token(*secrets, token=f"{TOKEN}\nX-Injected: 1")

    with pytest.raises(SourceRejected) as raised:
        github.sources().head(source)

    assert TOKEN not in f"{raised.value!r}" and raised.value.__suppress_context__
    assert github.attempts == 0


def test_given_a_200_without_a_commit_when_resolved_then_transient_not_a_crash(
    loopback: Loopback, secrets: tuple[Any, Stubber]
) -> None:
    loopback.route("GET", "/repos/acme/orders/branches/release", 200, {"name": "release"})

    with pytest.raises(SourceUnavailable, match=r"^github:acme/orders@release: GitHub answered HTTP 200 without"):
        Sources(None, secrets[0], loopback.base_url).head(ORDERS)


def test_given_no_secrets_client_when_a_token_is_needed_then_permanent_naming_the_secret(github: GitHub) -> None:
    source = GitHubSource(github="acme/orders", branch="release", token_secret=TOKEN_SECRET)

    with pytest.raises(SourceRejected, match=rf"GitHub token secret {TOKEN_SECRET} cannot be read"):
        Sources(None, None, github.url).head(source)


def test_given_the_two_error_kinds_then_both_are_source_errors_and_only_unavailable_is_transient() -> None:
    assert issubclass(SourceUnavailable, SourceError) and issubclass(SourceRejected, SourceError)
    assert (SourceUnavailable.transient, SourceRejected.transient) == (True, False)


@pytest.mark.parametrize(
    ("source", "text"),
    [
        (CodeCommitSource(codecommit="payments", branch="release"), "codecommit:payments@release"),
        (GitHubSource(github="acme/orders"), "github:acme/orders@main"),
    ],
)
def test_given_a_source_when_described_for_release_notes_then_kind_repo_and_branch_are_named(
    source: CodeCommitSource | GitHubSource, text: str
) -> None:
    assert describe(source) == text


# --- the sandbox's GitHub answers as GitHub does ------------------------------------------------------------------


def test_given_an_unencoded_slash_when_the_emulator_routes_it_then_the_branch_takes_the_rest_of_the_path(
    github: GitHub,
) -> None:
    github.emulator.github_heads[("acme/orders", "feature/x")] = SHA

    for path in ("feature%2Fx", "feature/x"):
        answer = requests.get(f"{github.url}/repos/acme/orders/branches/{path}", timeout=5)
        assert (answer.status_code, answer.json()["commit"]["sha"], answer.json()["name"]) == (200, SHA, "feature/x")


def test_given_a_script_when_it_is_used_up_then_the_emulator_answers_with_the_head_again(github: GitHub) -> None:
    github.script(503)

    statuses = [requests.get(f"{github.url}/repos/acme/orders/branches/release", timeout=5).status_code for _ in "ab"]

    assert statuses == [503, 200]
    assert github.emulator.github_answers == [("acme/orders", "release", 503), ("acme/orders", "release", 200)]


def test_given_a_scripted_rate_limit_when_answered_then_it_carries_githubs_headers_on_the_virtual_clock(
    github: GitHub,
) -> None:
    github.script(GitHubAnswer.rate_limited(status=429, reset_after=30))

    answer = requests.get(f"{github.url}/repos/acme/orders/branches/release", timeout=5)

    headers = answer.headers
    assert (answer.status_code, headers["x-ratelimit-remaining"], headers["x-ratelimit-reset"]) == (
        429,
        "0",
        str(int(NOW) + 30),
    )
    assert answer.json()["message"].startswith("API rate limit exceeded")
