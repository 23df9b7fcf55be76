"""Resolve a release branch to a commit: CodeCommit through boto3, GitHub through its REST API with requests.

Two kinds of failure, both `SourceError`s, each naming the source (`github:owner/repo@branch`) and what went wrong,
never a token, a URL or a response header:
- `SourceUnavailable`: transient (5xx, timeouts, connection errors, rate limits, AWS throttling). Short waits happen
  here, inside the Lambda, within `wait_budget`; a longer wait is the state machine's `Retry`.
- `SourceRejected`: permanent (no such repository or branch, a refused or missing token): retrying cannot help.
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self
from urllib.parse import quote, urlsplit

import requests
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, NewConnectionError, ResponseError
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError
from urllib3.util.retry import Retry

from release_train.domain.fleet import CodeCommitSource, GitHubSource, Source

if TYPE_CHECKING:
    from urllib3.connectionpool import ConnectionPool
    from urllib3.response import BaseHTTPResponse


class SourceError(Exception):
    """A branch could not be resolved. `source` names it (`describe`), `reason` says what went wrong."""

    transient: ClassVar[bool] = False

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source, self.reason = source, reason


class SourceUnavailable(SourceError):
    """Transient: the source or the secret store did not answer in time, failed, or asks us to come back later."""

    transient = True


class SourceRejected(SourceError):
    """Permanent: the repository or branch does not exist, or the credentials are missing or refused."""


# AWS error codes that mean "try again later": the lists botocore's standard retry mode retries
# (botocore/retries/standard.py: ThrottledRetryableChecker, TransientRetryableChecker), plus the services' spellings
# of an internal error (Secrets Manager: InternalServiceError). botocore has already retried these; the state machine
# may try again later.
_AWS_TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalFailure",
        "InternalServiceError",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
    }
)


def _aws_failure(exc: BaseException | None) -> tuple[bool, str]:
    """(transient, what) for an AWS SDK error; `what` is the error code or class name, never the message."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "ClientError")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return code in _AWS_TRANSIENT_CODES or status >= 500 or status == 429, code
    if isinstance(exc, (BotoConnectionError, HTTPClientError)):  # botocore's transient exception classes
        return True, type(exc).__name__
    if isinstance(exc, BotoCoreError):  # no credentials, bad parameters: configuration, not luck
        return False, type(exc).__name__
    return False, type(exc).__name__ if exc is not None else "unknown error"


def describe(source: Source) -> str:
    if isinstance(source, CodeCommitSource):
        return f"codecommit:{source.codecommit}@{source.branch}"
    return f"github:{source.github}@{source.branch}"


# --- GitHub: HTTP retries ------------------------------------------------------------------------------------------

# GitHub REST, "Troubleshooting the REST API > Rate limit errors": a rate-limited request gets 403 or 429; with
# `retry-after`, wait that many seconds; with `x-ratelimit-remaining: 0`, wait until `x-ratelimit-reset` (UTC epoch
# seconds); otherwise wait at least one minute.
_RATE_LIMIT_STATUSES = frozenset({403, 429})
_UNLABELLED_RATE_LIMIT_WAIT = 60.0
_TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})


def _sleep(seconds: float) -> None:
    time.sleep(seconds)  # looked up at call time: the sandbox points this module's `time` at its virtual clock


def _now() -> float:
    return time.time()


def _is_rate_limit(status: int, headers: Mapping[str, str]) -> bool:
    """429 always; a 403 only with rate-limit headers (otherwise it is GitHub refusing the token: permanent)."""
    return status == 429 or (
        status == 403 and (headers.get("retry-after") is not None or headers.get("x-ratelimit-remaining") == "0")
    )


class _BudgetedRetry(Retry):
    """urllib3's Retry with a wait budget and GitHub's `x-ratelimit-reset`.

    Why a subclass: urllib3 honours `Retry-After` but not `x-ratelimit-reset`, and it sleeps whatever a server asks
    (up to 6 hours). Here `increment()` plans the wait before each retry and refuses the retry when the waits would
    exceed `budget` (urllib3 then hands back the last response, `raise_on_status=False`, or raises the last error),
    so a Lambda never sleeps out its timeout: the adapter reports `SourceUnavailable` and the state machine's Retry
    waits instead. A 403 that is not a rate limit is a refusal and is never retried.
    """

    def __init__(
        self,
        *args: Any,
        budget: float = 20.0,
        sleep: Callable[[float], None] = _sleep,
        clock: Callable[[], float] = _now,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.budget, self.sleep_fn, self.clock = budget, sleep, clock
        self.waited = 0.0  # seconds slept so far in this request
        self.planned = 0.0  # seconds to sleep before the next attempt

    def new(self, **kw: Any) -> Self:
        retry = super().new(**kw)
        retry.budget, retry.sleep_fn, retry.clock, retry.waited = self.budget, self.sleep_fn, self.clock, self.waited
        return retry

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        if response is not None and response.status == 403 and not _is_rate_limit(403, response.headers):
            raise MaxRetryError(_pool, url, ResponseError(f"HTTP {response.status} is not a rate limit"))  # type: ignore[arg-type]
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        wait = retry._wait(response)
        if self.waited + wait > self.budget:
            reason = error or ResponseError(f"a {wait:.0f}s wait is over the {self.budget:.0f}s budget")
            raise MaxRetryError(_pool, url, reason) from error  # type: ignore[arg-type]
        retry.waited, retry.planned = self.waited + wait, wait
        return retry

    def _wait(self, response: BaseHTTPResponse | None) -> float:
        if response is None:
            return self.get_backoff_time()
        return self.requested_wait(response.status, response.headers)

    def requested_wait(self, status: int, headers: Mapping[str, str]) -> float:
        """Seconds to wait before trying again after this answer: Retry-After first, then a rate limit's reset."""
        retry_after = self._retry_after(headers.get("retry-after"))
        if retry_after is not None and self.respect_retry_after_header:
            return retry_after
        if status in _RATE_LIMIT_STATUSES:
            reset = headers.get("x-ratelimit-reset", "")
            if headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
                return max(float(reset) - self.clock(), 0.0)
            return _UNLABELLED_RATE_LIMIT_WAIT
        return self.get_backoff_time()

    def _retry_after(self, value: str | None) -> float | None:
        """RFC 9110 Retry-After: delay-seconds or an HTTP-date (against our clock, which the sandbox makes virtual)."""
        if value is None:
            return None
        if re.fullmatch(r"\s*\d+\s*", value):
            return float(value)
        parsed = email.utils.parsedate_tz(value)
        return None if parsed is None else max(email.utils.mktime_tz(parsed) - self.clock(), 0.0)

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        if self.planned > 0:
            self.sleep_fn(self.planned)

    def sleep_for_retry(self, response: BaseHTTPResponse) -> bool:  # redirects: requests follows them itself
        self.sleep(response)
        return self.planned > 0


# --- the adapter ---------------------------------------------------------------------------------------------------


class Sources:
    """Resolve heads. `wait_budget` bounds the seconds one GitHub request may sleep between its attempts (a server
    asking for more fails fast as `SourceUnavailable`); worst case for one head is `(retries + 1) * read timeout +
    wait_budget`. Secrets are read through Powertools Parameters and cached for `secret_max_age` seconds."""

    def __init__(
        self,
        codecommit: Any,
        secrets: Any,
        github_api_url: str = "https://api.github.com",
        *,
        retries: int = 2,
        backoff_factor: float = 0.5,
        wait_budget: float = 20.0,
        timeout: tuple[float, float] = (3.05, 10.0),
        secret_max_age: int = 300,
        sleep: Callable[[float], None] = _sleep,
        clock: Callable[[], float] = _now,
    ) -> None:
        self._codecommit = codecommit
        # Built on the injected client (tests and the sandbox pass theirs); without one, no token can be read.
        self._secrets = SecretsProvider(boto3_client=secrets) if secrets is not None else None
        self._secret_max_age = secret_max_age
        self._github = github_api_url.rstrip("/")  # GitHub Enterprise Server: https://<host>/api/v3
        self._timeout = timeout
        self.retry = _BudgetedRetry(
            total=retries,
            allowed_methods=frozenset({"GET"}),
            status_forcelist=_TRANSIENT_STATUSES | _RATE_LIMIT_STATUSES,
            backoff_factor=backoff_factor,
            backoff_max=wait_budget,
            raise_on_status=False,  # the last response comes back: its status says which error to raise
            respect_retry_after_header=True,
            budget=wait_budget,
            sleep=sleep,
            clock=clock,
        )
        self._session = requests.Session()
        adapter = HTTPAdapter(max_retries=self.retry)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)

    def head(self, source: Source) -> str:
        if isinstance(source, CodeCommitSource):
            return self._codecommit_head(source)
        return self._github_head(source)

    # --- CodeCommit: botocore already retries throttling and 5xx (standard mode); here only the verdict ------------

    def _codecommit_head(self, source: CodeCommitSource) -> str:
        try:
            branch = self._codecommit.get_branch(repositoryName=source.codecommit, branchName=source.branch)
        except (ClientError, BotoCoreError) as exc:
            # CodeCommit API reference, GetBranch errors: BranchDoesNotExistException, RepositoryDoesNotExistException,
            # InvalidBranchNameException, EncryptionKey*Exception... are permanent; throttling and 5xx are not.
            transient, what = _aws_failure(exc)
            raise (SourceUnavailable if transient else SourceRejected)(describe(source), what) from None
        return str(branch["branch"]["commitId"])

    # --- GitHub --------------------------------------------------------------------------------------------------

    def _github_head(self, source: GitHubSource) -> str:
        name = describe(source)
        owner, repo = source.github.split("/", 1)
        segments = [owner, repo, source.branch]
        if any(s in ("", ".", "..") for s in segments):  # dot segments would be resolved away by URL normalisation
            raise SourceRejected(name, "not a GitHub repository and branch name")
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if source.token_secret:
            if not _https_or_loopback(self._github):
                raise SourceRejected(name, "a GitHub token is sent over https only (GitHubApiUrl is not https://)")
            headers["Authorization"] = f"Bearer {self._token(name, source.token_secret)}"
        # GitHub REST "Get a branch": GET /repos/{owner}/{repo}/branches/{branch}. Each value is one percent-encoded
        # path segment, '/' included (GitHub decodes %2F in the branch segment), so '#', '?', '%' or a space in a
        # branch name can never turn into a fragment, a query or another branch.
        owner_q, repo_q, branch_q = (quote(s, safe="") for s in segments)
        url = f"{self._github}/repos/{owner_q}/{repo_q}/branches/{branch_q}"
        try:
            response = self._session.get(url, headers=headers, timeout=self._timeout, allow_redirects=True)
        # requests' messages carry the URL (and an InvalidHeader one the header value, i.e. the token): name the
        # type only, and drop the chained exception so no traceback prints it either.
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidHeader) as exc:
            raise SourceRejected(name, f"the request could not be made ({type(exc).__name__})") from None
        except requests.RequestException as exc:
            raise SourceUnavailable(name, _unreachable(exc)) from None
        with response:
            return self._github_answer(name, response)

    def _github_answer(self, name: str, response: requests.Response) -> str:
        status = response.status_code
        if status == 200:
            try:
                return str(response.json()["commit"]["sha"])
            except (ValueError, KeyError, TypeError):
                raise SourceUnavailable(name, "GitHub answered HTTP 200 without a commit sha") from None
        retries = getattr(response.raw, "retries", None)  # urllib3 keeps the Retry that ended the request
        attempts = len(retries.history) + 1 if isinstance(retries, Retry) else 1
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        if _is_rate_limit(status, response.headers):
            wait = self.retry.requested_wait(status, response.headers)
            waited = retries.waited if isinstance(retries, _BudgetedRetry) else 0.0
            over = f", over this call's {self.retry.budget:.0f}s budget" if waited + wait > self.retry.budget else ""
            raise SourceUnavailable(
                name, f"rate limited by GitHub (HTTP {status}){tried}: it asks to wait {wait:.0f}s{over}"
            )
        if status >= 500:
            raise SourceUnavailable(name, f"GitHub failed (HTTP {status}){tried}")
        reasons = {
            401: "the GitHub token is missing, invalid or expired (HTTP 401)",
            403: "the GitHub token may not read this repository (HTTP 403)",
            404: "no such repository or branch, or the token cannot see it (HTTP 404)",
        }
        raise SourceRejected(name, reasons.get(status, f"GitHub refused the request (HTTP {status})"))

    def _token(self, name: str, secret_id: str) -> str:
        if self._secrets is None:
            raise SourceRejected(name, f"GitHub token secret {secret_id} cannot be read: no Secrets Manager client")
        try:
            value = self._secrets.get(secret_id, max_age=self._secret_max_age)
        except Exception as exc:
            # Powertools wraps every provider error in GetParameterError(str(error)), raised inside its `except`:
            # the SDK error is the context.
            transient, what = _aws_failure(exc.__context__ or exc)
            kind = SourceUnavailable if transient else SourceRejected
            state = "not found" if what == "ResourceNotFoundException" else "unreadable"
            raise kind(name, f"GitHub token secret {secret_id} {state} ({what})") from None
        token = value.strip() if isinstance(value, str) else ""
        if not token:
            raise SourceRejected(name, f"GitHub token secret {secret_id} holds no text token")
        return token


def _https_or_loopback(url: str) -> bool:
    """https, or plain http to this machine (the sandbox's loopback GitHub): nothing else may carry a token."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https":
        return True
    try:
        return parts.scheme == "http" and (host == "localhost" or ipaddress.ip_address(host).is_loopback)
    except ValueError:
        return False


def _unreachable(exc: requests.RequestException) -> str:
    """What went wrong with a request that got no answer (after its retries), without its message: it holds the URL."""
    # requests turns urllib3's MaxRetryError into ConnectionError whatever the cause: look at the cause.
    cause = exc.args[0].reason if exc.args and isinstance(exc.args[0], MaxRetryError) else exc
    refused = isinstance(cause, NewConnectionError)  # urllib3 makes it a ConnectTimeoutError: it is not a timeout
    if not refused and (isinstance(exc, requests.Timeout) or isinstance(cause, TimeoutError | Urllib3TimeoutError)):
        return f"GitHub did not answer in time ({type(cause).__name__})"
    return f"GitHub could not be reached ({type(cause).__name__})"
