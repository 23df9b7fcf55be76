"""Resolve a release branch to a commit: CodeCommit through boto3, GitHub through its REST API with requests."""

from __future__ import annotations

from typing import Any

import requests

from release_train.domain.fleet import CodeCommitSource, GitHubSource, Source


class SourceError(Exception):
    """A branch could not be resolved (missing repository/branch, bad token, API down)."""


class Sources:
    def __init__(self, codecommit: Any, secrets: Any, github_api_url: str = "https://api.github.com") -> None:
        self._codecommit = codecommit
        self._secrets = secrets  # secretsmanager client
        self._github = github_api_url.rstrip("/")  # GitHub Enterprise Server: https://<host>/api/v3
        self._session = requests.Session()
        self._tokens: dict[str, str] = {}

    def head(self, source: Source) -> str:
        if isinstance(source, CodeCommitSource):
            try:
                branch = self._codecommit.get_branch(repositoryName=source.codecommit, branchName=source.branch)
            except Exception as exc:
                raise SourceError(f"codecommit {source.codecommit}@{source.branch}: {exc}") from exc
            return str(branch["branch"]["commitId"])
        return self._github_head(source)

    def _github_head(self, source: GitHubSource) -> str:
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if source.token_secret:
            headers["Authorization"] = f"Bearer {self._token(source.token_secret)}"
        url = f"{self._github}/repos/{source.github}/branches/{source.branch}"
        try:
            response = self._session.get(url, headers=headers, timeout=10)
        except requests.RequestException as exc:
            raise SourceError(f"github {source.github}@{source.branch}: {exc}") from exc
        if response.status_code != 200:
            raise SourceError(
                f"github {source.github}@{source.branch}: HTTP {response.status_code} {response.text[:200]}"
            )
        return str(response.json()["commit"]["sha"])

    def _token(self, secret_id: str) -> str:
        if secret_id not in self._tokens:
            try:
                secret = self._secrets.get_secret_value(SecretId=secret_id)["SecretString"]
            except Exception as exc:
                raise SourceError(f"GitHub token secret {secret_id} unreadable: {exc}") from exc
            self._tokens[secret_id] = secret.strip()
        return self._tokens[secret_id]


def describe(source: Source) -> str:
    if isinstance(source, CodeCommitSource):
        return f"codecommit:{source.codecommit}@{source.branch}"
    return f"github:{source.github}@{source.branch}"
