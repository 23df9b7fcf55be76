"""Resolving release branches: CodeCommit through boto3 (Stubber: moto has no GetBranch), GitHub over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from release_train.adapters.sources import SourceError, Sources, describe
from release_train.domain.fleet import CodeCommitSource, GitHubSource
from tests.unit.adapters.loopback import Loopback, loopback_server

SHA = "0123456789abcdef0123456789abcdef01234567"


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
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[Loopback]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a developer's proxy must not see the loopback calls
    with loopback_server() as server:
        yield server


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


def test_given_a_missing_codecommit_branch_when_resolved_then_a_source_error_names_repo_and_branch(
    codecommit: tuple[Any, Stubber], secrets: tuple[Any, Stubber]
) -> None:
    client, stubber = codecommit
    stubber.add_client_error("get_branch", "BranchDoesNotExistException", "Branch does not exist")

    with pytest.raises(SourceError, match=r"^codecommit payments@release: .*BranchDoesNotExistException"):
        Sources(client, secrets[0]).head(CodeCommitSource(codecommit="payments", branch="release"))


def test_given_a_github_branch_when_resolved_then_its_commit_sha_is_returned(
    github: Loopback, codecommit: tuple[Any, Stubber], secrets: tuple[Any, Stubber]
) -> None:
    github.route("GET", "/repos/acme/orders/branches/release", 200, {"name": "release", "commit": {"sha": SHA}})

    head = Sources(codecommit[0], secrets[0], github.base_url).head(
        GitHubSource(github="acme/orders", branch="release")
    )

    assert head == SHA


def test_given_a_token_secret_when_resolving_on_github_then_the_token_is_sent_as_a_bearer_header(
    github: Loopback, codecommit: tuple[Any, Stubber], secrets: tuple[Any, Stubber]
) -> None:
    github.route("GET", "/repos/acme/orders/branches/release", 200, {"commit": {"sha": SHA}})
    client, stubber = secrets
    stubber.add_response(
        "get_secret_value",
        {"SecretString": "ghp_secret\n", "Name": "release-train/github-token"},
        {"SecretId": "release-train/github-token"},
    )
    source = GitHubSource(github="acme/orders", branch="release", token_secret="release-train/github-token")

    Sources(codecommit[0], client, github.base_url + "/").head(source)

    sent = github.requests[0].headers
    assert (sent["Authorization"], sent["X-GitHub-Api-Version"]) == ("Bearer ghp_secret", "2022-11-28")


def test_given_the_same_token_secret_twice_when_resolving_then_the_secret_is_read_once(
    github: Loopback, codecommit: tuple[Any, Stubber], secrets: tuple[Any, Stubber]
) -> None:
    github.route("GET", "/repos/acme/orders/branches/release", 200, {"commit": {"sha": SHA}})
    client, stubber = secrets
    stubber.add_response("get_secret_value", {"SecretString": "ghp_secret"}, {"SecretId": "gh"})
    sources = Sources(codecommit[0], client, github.base_url)
    source = GitHubSource(github="acme/orders", branch="release", token_secret="gh")

    heads = [sources.head(source), sources.head(source)]  # a second read would find no stubbed response

    assert heads == [SHA, SHA]


def test_given_no_token_secret_when_resolving_on_github_then_no_authorization_header_is_sent(
    github: Loopback, codecommit: tuple[Any, Stubber], secrets: tuple[Any, Stubber]
) -> None:
    github.route("GET", "/repos/acme/orders/branches/release", 200, {"commit": {"sha": SHA}})

    Sources(codecommit[0], secrets[0], github.base_url).head(GitHubSource(github="acme/orders", branch="release"))

    assert "Authorization" not in github.requests[0].headers


def test_given_an_unknown_github_branch_when_resolved_then_a_source_error_carries_the_404(
    github: Loopback, codecommit: tuple[Any, Stubber], secrets: tuple[Any, Stubber]
) -> None:
    sources = Sources(codecommit[0], secrets[0], github.base_url)

    with pytest.raises(SourceError, match=r"^github acme/orders@nope: HTTP 404"):
        sources.head(GitHubSource(github="acme/orders", branch="nope"))


def test_given_an_unreadable_token_secret_when_resolving_then_a_source_error_names_the_secret(
    github: Loopback, codecommit: tuple[Any, Stubber], secrets: tuple[Any, Stubber]
) -> None:
    client, stubber = secrets
    stubber.add_client_error("get_secret_value", "AccessDeniedException", "not allowed")
    source = GitHubSource(github="acme/orders", branch="release", token_secret="release-train/github-token")

    with pytest.raises(SourceError, match=r"^GitHub token secret release-train/github-token unreadable"):
        Sources(codecommit[0], client, github.base_url).head(source)


def test_given_github_unreachable_when_resolving_then_a_source_error_is_raised(
    codecommit: tuple[Any, Stubber], secrets: tuple[Any, Stubber]
) -> None:
    with loopback_server() as gone:
        url = gone.base_url  # the server is shut down when the block ends: the port refuses connections

    with pytest.raises(SourceError, match=r"^github acme/orders@release: "):
        Sources(codecommit[0], secrets[0], url).head(GitHubSource(github="acme/orders", branch="release"))


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
