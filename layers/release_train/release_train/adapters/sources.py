"""Resolve release branches to commits: CodeCommit through boto3, GitHub through its GraphQL API with requests.

`heads(sources)` resolves a whole fleet's branches in one call, sized for thousands of services inside PlanRelease's
timeout:
- GitHub: one GraphQL query per `GITHUB_BATCH` branches (aliases `r0`, `r1`, ... each a `repository { ref }`), sent
  one after another: GitHub asks integrations to avoid concurrent requests ("Rate limits and query limits for the
  GraphQL API > Staying under the rate limit"). Owner, repository and branch travel as GraphQL variables, never in
  the query text, so no branch name can change the query.
- CodeCommit: one GetBranch per branch, `CODECOMMIT_WORKERS` at a time, while the GitHub queries run.
Each distinct source is asked once.

Two kinds of failure, both `SourceError`s, each naming the source (`github:owner/repo@branch`) and what went wrong,
never a token, a URL or a response header:
- `SourceUnavailable`: transient (5xx, timeouts, connection errors, rate limits, AWS throttling). Short waits happen
  here, inside the Lambda, within `wait_budget`; a longer wait is the state machine's `Retry`.
- `SourceRejected`: permanent (no such repository or branch, a refused or missing token): retrying cannot help.
When several sources fail, `heads` raises the first rejected one (in the order asked: retrying cannot fix it, so the
release fails now rather than after the state machine's retries), else the first unavailable one. A transient
failure stops further lookups (the source is down; each would wait out its own retries).
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self
from urllib.parse import urlsplit

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

# GitHub, "Rate limits and query limits for the GraphQL API > Exceeding the rate limit" (the REST API's
# "Troubleshooting > Rate limit errors" says the same): a secondary rate limit answers 403 (or 429, or 200 with an
# error, see `_rate_limited`); with `retry-after`, wait that many seconds; with `x-ratelimit-remaining: 0`, wait until
# `x-ratelimit-reset` (UTC epoch seconds); otherwise wait at least one minute. A primary limit answers HTTP 200 with
# an error and `x-ratelimit-remaining: 0`. A query GitHub takes over 10 s to answer ends in 502 or 504 ("Timeouts").
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

# Branches per GitHub GraphQL query. GitHub documents ("Rate limits and query limits for the GraphQL API",
# https://docs.github.com/en/graphql/overview/rate-limits-and-query-limits-for-the-graphql-api):
# - "Node limit": at most 500,000 nodes per call, counted over connections (`first`/`last`, 1-100 each). This query
#   has no connection, so it is far from that limit, and it costs the minimum 1 point of the primary limit (5,000
#   points an hour for a token) and 1 point of the secondary limit (2,000 points a minute for the GraphQL endpoint).
# - "Timeouts": GitHub ends a query it takes over 10 s to process (502 or 504), and "Other resource limits": a query
#   "requesting thousands of objects" may be cut off. These bound the batch: 100 branches ask for 300 objects (a
#   repository, a ref and a commit each), an order of magnitude below "thousands", the same 100 GitHub allows a
#   connection to return in one page. 2,000 GitHub services are 20 queries, sent one after another.
GITHUB_BATCH = 100
# GetBranch calls in flight at once: botocore's default connection pool per client (Config max_pool_connections=10),
# so no call waits for a connection or throws one away. CodeCommit documents no per-operation rate, only an account's
# maximum request rate shared with git clients and the console (user guide, "Troubleshooting access errors > Rate
# Exceeded"); botocore's adaptive retry mode (adapters/aws.py) slows the shared client down when it is throttled.
CODECOMMIT_WORKERS = 10

_COMMIT = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")  # a SHA-1 (or SHA-256) object id, as GitHub's GitObjectID


class _Lookup:
    """What one `heads` call has found so far: written by the GitHub thread and the CodeCommit workers."""

    def __init__(self, clock: Callable[[], float] = _now, deadline: float | None = None) -> None:
        self.commits: dict[Source, str] = {}
        self.errors: dict[Source, SourceError] = {}
        self.stopped = threading.Event()  # a source is down (or something broke): ask nothing more
        self._lock = threading.Lock()
        self._clock, self.deadline = clock, deadline

    def left(self, at_most: float) -> float:
        """Seconds until the deadline, at most `at_most` (never negative)."""
        return at_most if self.deadline is None else max(0.0, min(at_most, self.deadline - self._clock()))

    def out_of_time(self, sources: Sequence[Source]) -> bool:
        """Past the deadline: these sources fail as transient (the state machine retries later), and nothing more
        is asked."""
        if self.deadline is None or self._clock() < self.deadline:
            return False
        self.fail_all(sources, SourceUnavailable("", "not asked: PlanRelease ran out of time (it retries later)"))
        return True

    def found(self, source: Source, commit: str) -> None:
        with self._lock:
            self.commits[source] = commit

    def failed(self, source: Source, error: SourceError) -> None:
        with self._lock:
            self.errors.setdefault(source, error)
        if error.transient:
            self.stopped.set()

    def fail_all(self, sources: Iterable[Source], error: SourceError) -> None:
        """A failure that is not one branch's (a token, a whole query): each source it touched fails with it."""
        for source in sources:
            self.failed(source, type(error)(describe(source), error.reason))

    def outcome(self, asked: Sequence[Source]) -> dict[Source, str]:
        for kind in (SourceRejected, SourceUnavailable):
            for source in asked:
                error = self.errors.get(source)
                if isinstance(error, kind):
                    raise error
        # Every source not found has an error: lookups stop only after a transient one (raised above).
        return {source: self.commits[source] for source in asked}


class Sources:
    """Resolve heads. `wait_budget` bounds the seconds one GitHub query may sleep between its attempts (a server
    asking for more fails fast as `SourceUnavailable`); worst case for one query is `(retries + 1) * read timeout +
    wait_budget`, and a query still failing after its retries is the last one sent (with a refused token: the last
    one sent with that token). Secrets are read through Powertools Parameters and cached for `secret_max_age`
    seconds."""

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
        github_batch: int = GITHUB_BATCH,
        codecommit_workers: int = CODECOMMIT_WORKERS,
        sleep: Callable[[float], None] = _sleep,
        clock: Callable[[], float] = _now,
    ) -> None:
        # Created by the caller before any worker shares it: botocore clients are thread-safe once created.
        self._codecommit = codecommit
        # Built on the injected client (tests and the sandbox pass theirs); without one, no token can be read.
        self._secrets = SecretsProvider(boto3_client=secrets) if secrets is not None else None
        self._secret_max_age = secret_max_age
        self._github = github_api_url.rstrip("/")  # GitHub Enterprise Server: https://<host>/api/v3
        self._graphql = _graphql_url(self._github)
        self._timeout = timeout
        self._batch, self._workers = github_batch, codecommit_workers
        self._clock, self._wait_budget = clock, wait_budget
        self.retry = _BudgetedRetry(
            total=retries,
            allowed_methods=frozenset({"POST"}),  # a GraphQL query only reads: sending it again changes nothing
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
        return self.heads([source])[source]

    def heads(self, sources: Iterable[Source], within: float | None = None) -> dict[Source, str]:
        """The commit at the head of each source's branch, each distinct source asked once; raises a `SourceError`
        (see the module's docstring for which one when several fail).

        `within` seconds: no request starts after them, and no retry waits past them; what is left unasked fails as
        `SourceUnavailable`, so a Lambda ends by the state machine's Retry, not by its timeout. A request already
        sent may still take its read timeout (and its retries' timeouts): the caller leaves room for that."""
        asked = list(dict.fromkeys(sources))
        lookup = _Lookup(self._clock, None if within is None else self._clock() + within)
        with ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="codecommit-heads") as pool:
            calls = [
                pool.submit(self._codecommit_into, lookup, source)
                for source in asked
                if isinstance(source, CodeCommitSource)
            ]
            try:  # GitHub in this thread, while the workers ask CodeCommit
                self._github_heads([s for s in asked if isinstance(s, GitHubSource)], lookup)
            except BaseException:
                lookup.stopped.set()  # an unexpected error: the workers start no further call
                raise
            for call in calls:
                call.result()  # an unexpected error in a worker (not a SourceError) is raised here
        return lookup.outcome(asked)

    # --- CodeCommit: botocore already retries throttling and 5xx (adaptive mode); here only the verdict -----------

    def _codecommit_into(self, lookup: _Lookup, source: CodeCommitSource) -> None:
        if lookup.stopped.is_set() or lookup.out_of_time([source]):
            return
        try:
            lookup.found(source, self._codecommit_head(source))
        except SourceError as exc:
            lookup.failed(source, exc)
        except BaseException:
            lookup.stopped.set()
            raise

    def _codecommit_head(self, source: CodeCommitSource) -> str:
        try:
            branch = self._codecommit.get_branch(repositoryName=source.codecommit, branchName=source.branch)
        except (ClientError, BotoCoreError) as exc:
            # CodeCommit API reference, GetBranch errors: BranchDoesNotExistException, RepositoryDoesNotExistException,
            # InvalidBranchNameException, EncryptionKey*Exception... are permanent; throttling and 5xx are not.
            transient, what = _aws_failure(exc)
            raise (SourceUnavailable if transient else SourceRejected)(describe(source), what) from None
        return str(branch["branch"]["commitId"])

    # --- GitHub: GraphQL, one query per batch, one query at a time -------------------------------------------------

    def _github_heads(self, sources: Sequence[GitHubSource], lookup: _Lookup) -> None:
        # A query carries one token: branches read with different tokens go in different queries.
        groups: dict[str | None, list[GitHubSource]] = {}
        for source in sources:
            groups.setdefault(source.token_secret, []).append(source)
        for secret, group in groups.items():
            if lookup.stopped.is_set():
                return
            try:
                headers = self._github_headers(describe(group[0]), secret)
            except SourceError as exc:
                lookup.fail_all(group, exc)
                continue
            for start in range(0, len(group), self._batch):
                if lookup.stopped.is_set():
                    return
                batch = group[start : start + self._batch]
                if lookup.out_of_time(batch):
                    return
                # The retry's waits end by the deadline too (a Retry-After past it fails fast, as over the budget).
                self.retry.budget = self._wait_budget if lookup.deadline is None else lookup.left(self._wait_budget)
                try:
                    answers = self._github_query(batch, headers)
                except SourceError as exc:
                    # The whole query failed. A refused token (or endpoint) refuses this group's later queries too.
                    lookup.fail_all(batch if exc.transient else group[start:], exc)
                    break
                for source, answer in answers.items():
                    if isinstance(answer, SourceError):
                        lookup.failed(source, answer)
                    else:
                        lookup.found(source, answer)

    def _github_headers(self, name: str, secret_id: str | None) -> dict[str, str]:
        if not secret_id:
            # GitHub, "Forming calls with GraphQL > Authenticating with GraphQL": the GraphQL API needs a token.
            raise SourceRejected(name, "GitHub's GraphQL API needs a token: the source names no token_secret")
        if not _https_or_loopback(self._github):
            raise SourceRejected(name, "a GitHub token is sent over https only (GitHubApiUrl is not https://)")
        return {"Accept": "application/json", "Authorization": f"Bearer {self._token(name, secret_id)}"}

    def _github_query(
        self, batch: Sequence[GitHubSource], headers: Mapping[str, str]
    ) -> dict[GitHubSource, str | SourceError]:
        """Each branch's commit or its own error; a failure of the whole query raises, naming the batch's first."""
        name = describe(batch[0])
        query, variables = heads_query(batch)
        try:
            response = self._session.post(
                self._graphql,
                json={"query": query, "variables": variables},
                headers=dict(headers),
                timeout=self._timeout,
                allow_redirects=False,
            )
        # requests' messages carry the URL (and an InvalidHeader one the header value, i.e. the token): name the
        # type only, and drop the chained exception so no traceback prints it either.
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidHeader) as exc:
            raise SourceRejected(name, f"the request could not be made ({type(exc).__name__})") from None
        except requests.RequestException as exc:
            raise SourceUnavailable(name, _unreachable(exc)) from None
        with response:
            if response.status_code != 200:
                self._github_failure(name, response)
            try:
                body = response.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise SourceUnavailable(name, "GitHub answered HTTP 200 without a GraphQL response")
            self._raise_if_rate_limited(name, body, response.headers)
            return {source: _head_in(body, f"r{i}", source) for i, source in enumerate(batch)}

    def _github_failure(self, name: str, response: requests.Response) -> None:
        status = response.status_code
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
            404: "GitHubApiUrl has no GraphQL API (HTTP 404)",
        }
        raise SourceRejected(name, reasons.get(status, f"GitHub refused the request (HTTP {status})"))

    def _raise_if_rate_limited(self, name: str, body: Mapping[str, Any], headers: Mapping[str, str]) -> None:
        """A rate limit GitHub reports in an HTTP 200 (a primary limit always is): transient, with the wait GitHub
        asks for. Not retried here (urllib3 retries by status): the state machine's Retry comes back later."""
        types = _error_types(body)
        limited = "RATE_LIMITED" in types or (
            bool(types) and (headers.get("retry-after") is not None or headers.get("x-ratelimit-remaining") == "0")
        )
        if limited:
            wait = self.retry.requested_wait(429, headers)  # Retry-After, else x-ratelimit-reset, else a minute
            raise SourceUnavailable(
                name, f"rate limited by GitHub (HTTP 200, RATE_LIMITED): it asks to wait {wait:.0f}s"
            )

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


def heads_query(batch: Sequence[GitHubSource]) -> tuple[str, dict[str, str]]:
    """The GraphQL query for a batch and its variables: alias `r<i>` reads the i-th source's branch. Only aliases and
    variable names (our own digits) are written into the query; owner, repository and branch are variables, so a
    branch named `x") { oid } #` is just a string GitHub compares with its refs.

    GitHub GraphQL reference: `Query.repository(owner: String!, name: String!)`, `Repository.ref(qualifiedName:
    String!)` ("fully qualified matches are checked in order (`refs/heads/master`) before falling back onto checks
    for short name matches"), `Ref.target: GitObject`, `GitObject.oid: GitObjectID!`."""
    declared: list[str] = []
    fields: list[str] = []
    variables: dict[str, str] = {}
    for i, source in enumerate(batch):
        owner, name = source.github.split("/", 1)
        variables |= {f"o{i}": owner, f"n{i}": name, f"b{i}": f"refs/heads/{source.branch}"}
        declared.append(f"$o{i}: String!, $n{i}: String!, $b{i}: String!")
        fields.append(
            f"r{i}: repository(owner: $o{i}, name: $n{i}) {{ ref(qualifiedName: $b{i}) {{ target {{ oid }} }} }}"
        )
    return f"query Heads({', '.join(declared)}) {{ {' '.join(fields)} }}", variables


def _error_types(body: Mapping[str, Any], alias: str | None = None) -> list[str]:
    """The `type`s of a GraphQL response's errors (GitHub adds `type`: NOT_FOUND, FORBIDDEN, RATE_LIMITED...), all of
    them or those whose `path` starts at `alias`."""
    errors = body.get("errors")
    found: list[str] = []
    for error in errors if isinstance(errors, list) else []:
        if not isinstance(error, dict):
            continue
        path = error.get("path")
        if alias is None or (isinstance(path, list) and path[:1] == [alias]):
            kind = str(error.get("type") or "ERROR")
            if kind not in found:
                found.append(kind)
    return found


def _head_in(body: Mapping[str, Any], alias: str, source: GitHubSource) -> str | SourceError:
    """One alias's answer. GitHub answers a repository it cannot find (or the token cannot see) with `null` and an
    error of type NOT_FOUND at the alias's path, a branch the repository does not have with `ref: null`."""
    name = describe(source)
    data = body.get("data")
    repository = data.get(alias) if isinstance(data, dict) else None
    mine = _error_types(body, alias)
    if "NOT_FOUND" in mine:
        return SourceRejected(name, "no such repository, or the token cannot see it (NOT_FOUND)")
    if "FORBIDDEN" in mine:
        return SourceRejected(name, "the GitHub token may not read this repository (FORBIDDEN)")
    if mine or not isinstance(repository, dict):
        seen = mine or _error_types(body) or ["no data"]
        return SourceUnavailable(name, f"GitHub answered without this branch ({', '.join(seen)})")
    ref = repository.get("ref")
    if ref is None:
        return SourceRejected(name, "no such branch (GitHub answered ref: null)")
    target = ref.get("target") if isinstance(ref, dict) else None
    oid = target.get("oid") if isinstance(target, dict) else None
    if isinstance(oid, str) and _COMMIT.fullmatch(oid):
        return oid
    return SourceUnavailable(name, "GitHub answered without a commit sha")


def _graphql_url(api_url: str) -> str:
    """GitHub's GraphQL endpoint for `GitHubApiUrl`: https://api.github.com/graphql; on GitHub Enterprise Server the
    REST root is https://<host>/api/v3 and GraphQL https://<host>/api/graphql."""
    return api_url.removesuffix("/v3") + "/graphql" if api_url.endswith("/api/v3") else api_url + "/graphql"


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
