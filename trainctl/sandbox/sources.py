"""Emulated sources: CodeCommit branches (GetBranch) and a loopback stand-in for GitHub's GraphQL API.

The scenario decides each service's head commit; the fleet decides where it lives. GitHub answers on 127.0.0.1 (the
stack's `GitHubApiUrl` parameter points there), so the real `requests` code path runs: `POST /graphql`, a query that
graphql-core parses, validates and executes against the slice of GitHub's public schema the train reads
(`repository(owner, name) { ref(qualifiedName) { target { oid } } }`), so a query GitHub would refuse (a field it does
not have, an undeclared or mistyped variable) is refused here too, and aliases and variables mean what they mean there.

A scenario may script GitHub's bad days per (owner/repo, branch): `github_script[(repo, branch)] = [500, 200]`
answers the next query that asks for that branch with a 500, the one after with the head, and every later one as
usual. An entry is a status code or a `GitHubAnswer` (rate-limit headers, `Retry-After`, a delay longer than the
client's read timeout, a dropped connection). How a query that asks for many branches is answered:
- 200 answers the branch with its head; 404 answers it `ref: null` (no such branch), 403 (no rate-limit fields) with
  a FORBIDDEN error at its path: in the response's data, beside the other branches' answers, as GitHub does;
- anything else (5xx, 401, a rate limit, a dropped connection) is the answer to the whole query, HTTP status and all;
  the first such entry among the branches asked wins, and every asked branch's entry is used up either way;
- a repository the emulator has no branch of is NOT_FOUND (`null` and an error of type NOT_FOUND at the alias),
  whatever its script.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from graphql import DocumentNode, GraphQLError, build_schema, execute_sync, parse, validate

from trainctl.sandbox.emulators import ApiError, Route

if TYPE_CHECKING:
    from trainctl.sandbox.emulators import World

_DOCS = "https://docs.github.com/graphql"
# GitHub, "Rate limits and query limits for the GraphQL API": 5,000 points an hour for a personal access token, and a
# query without connections costs 1 point; `x-ratelimit-resource` is `graphql` for every GraphQL request.
_RATE_LIMIT = 5000
# GitHub's error bodies ({"message", "documentation_url", "status"}), by status, for answers to the whole request.
_MESSAGES = {
    401: "Bad credentials",
    403: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
    429: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
    500: "Server Error",
    502: "We couldn't respond to your request in time. Sorry about that. Please try resubmitting your request.",
    503: "Service Unavailable",
    504: "We couldn't respond to your request in time. Sorry about that. Please try resubmitting your request.",
}

# The part of GitHub's public GraphQL schema (docs.github.com/graphql/reference: Query.repository, Repository.ref,
# Ref, GitObject, Commit) that branch lookups read, with GitHub's argument types and nullability.
_SCHEMA = build_schema(
    """
    scalar GitObjectID

    interface GitObject {
      oid: GitObjectID!
    }

    type Commit implements GitObject {
      oid: GitObjectID!
    }

    type Ref {
      name: String!
      prefix: String!
      target: GitObject
    }

    type Repository {
      name: String!
      nameWithOwner: String!
      ref(qualifiedName: String!): Ref
    }

    type Query {
      repository(owner: String!, name: String!, followRenames: Boolean = true): Repository
    }
    """
)


class _GitHubError(Exception):
    """An error GitHub reports in a GraphQL response with its own `type` (NOT_FOUND, FORBIDDEN, ...)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class GitHubAnswer:
    """One scripted answer for a branch, used up by the next query that asks for it.

    `status` 200 answers with the branch's head (`ref: null` if it has none). The rate-limit fields follow GitHub,
    "Rate limits and query limits for the GraphQL API > Exceeding the rate limit": a primary limit is HTTP 200 (or
    403/429) with `x-ratelimit-remaining: 0` and `x-ratelimit-reset` (UTC epoch seconds, here: the virtual now +
    `reset_after`); a secondary one is 403 or 429 carrying `retry-after`. `delay` holds the answer for that many wall
    seconds (the virtual clock does not move while the caller waits on its socket): longer than the client's read
    timeout, it is a timeout. `drop` closes the connection without an answer.
    """

    status: int = 200
    retry_after: int | None = None
    remaining: int | None = None
    reset_after: int | None = None
    delay: float = 0.0
    drop: bool = False

    @classmethod
    def rate_limited(
        cls, status: int = 403, reset_after: int | None = 60, retry_after: int | None = None
    ) -> GitHubAnswer:
        """A primary rate limit (`reset_after`) or, with `retry_after` only, a secondary one."""
        return cls(
            status=status,
            retry_after=retry_after,
            remaining=0 if reset_after is not None else None,
            reset_after=reset_after,
        )

    @property
    def in_band(self) -> bool:
        """Answered inside a 200 response, beside other branches' answers (not the answer to the whole query)."""
        if self.drop or self.remaining == 0 or self.retry_after is not None:
            return False
        return self.status in (200, 403, 404)


@dataclass(frozen=True)
class _Reply:
    status: int
    body: dict[str, Any] | None  # None: the connection is dropped without an answer
    answer: GitHubAnswer  # whose rate-limit headers the reply carries
    delay: float = 0.0


class Sources:
    def __init__(self, world: World) -> None:
        self.world = world
        self.branches: dict[tuple[str, str], str] = {}  # CodeCommit (repository, branch) -> commit
        self.github_heads: dict[tuple[str, str], str] = {}  # GitHub (owner/repo, branch) -> commit
        # GitHub (owner/repo, branch) -> the next answers, one used up per query asking for it; then the head as usual.
        self.github_script: dict[tuple[str, str], list[int | GitHubAnswer]] = {}
        self.github_requests: list[str] = []  # raw request paths, as sent
        self.github_queries: list[dict[str, Any]] = []  # GraphQL request bodies ({query, variables}), as sent
        self.github_answers: list[tuple[str, str, int]] = []  # (owner/repo, branch, status) per branch asked
        self.latency = 0.0  # wall seconds every GitHub answer takes at least (bench/heads_bench.py)
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def routes(self) -> dict[tuple[str, str], Route]:
        return {("codecommit", "GetBranch"): self.get_branch}

    def get_branch(self, params: dict[str, Any]) -> dict[str, Any]:
        key = (params["repositoryName"], params["branchName"])
        if key not in self.branches:
            # CodeCommit GetBranch errors (API reference): the repository or the branch does not exist.
            if not any(repo == key[0] for repo, _ in self.branches):
                raise ApiError("RepositoryDoesNotExistException", f"{key[0]} does not exist")
            raise ApiError("BranchDoesNotExistException", f"Branch {key[1]} does not exist in {key[0]}")
        return {"branch": {"branchName": key[1], "commitId": self.branches[key]}}

    # --- GitHub on loopback -----------------------------------------------------------------------------------------

    def script_github(self, repo: str, branch: str, *answers: int | GitHubAnswer) -> None:
        """Append answers for (owner/repo, branch): `script_github("acme/orders", "release", 500, 200)`."""
        with self._lock:
            self.github_script.setdefault((repo, branch), []).extend(answers)

    def _next_answer(self, key: tuple[str, str]) -> GitHubAnswer:
        with self._lock:
            queue = self.github_script.get(key)
            entry: int | GitHubAnswer = queue.pop(0) if queue else 200
        return entry if isinstance(entry, GitHubAnswer) else GitHubAnswer(status=entry)

    def _now(self) -> float:
        clock = getattr(self.world, "clock", None)  # the virtual clock: x-ratelimit-reset is in its epoch
        return time.time() if clock is None else float(clock.now().timestamp())

    def reply(self, path: str, authorization: str | None, raw: bytes) -> _Reply:
        """GitHub's answer to `POST {path}` with this body."""
        if urlsplit(path).path != "/graphql":
            return _Reply(404, {"message": "Not Found", "documentation_url": _DOCS, "status": "404"}, GitHubAnswer(404))
        if not authorization:
            # "Forming calls with GraphQL > Authenticating with GraphQL": the GraphQL API answers only with a token.
            body = {"message": "This endpoint requires you to be authenticated.", "documentation_url": _DOCS}
            return _Reply(401, {**body, "status": "401"}, GitHubAnswer(401))
        try:
            request = json.loads(raw)
            query, variables = request["query"], request.get("variables") or {}
            if not isinstance(query, str) or not isinstance(variables, dict):
                raise TypeError(query)
        except (ValueError, KeyError, TypeError):
            return _Reply(400, {"message": "Problems parsing JSON", "documentation_url": _DOCS}, GitHubAnswer(400))
        self.github_queries.append({"query": query, "variables": variables})
        return self.answer_graphql(query, variables)

    def answer_graphql(self, query: str, variables: dict[str, Any]) -> _Reply:
        """Parse, validate and execute a query; GitHub reports a query it refuses in an HTTP 200, under `errors`."""
        document, refused = _checked(query)
        if document is None:
            return _Reply(200, {"errors": [_formatted(e) for e in refused]}, GitHubAnswer())
        asked: list[_Asked] = []
        result = execute_sync(_SCHEMA, document, root_value=_Query(self, asked), variable_values=variables)
        delay = max((a.answer.delay for a in asked), default=0.0)
        whole = next((a.answer for a in asked if not a.answer.in_band), None)
        with self._lock:
            self.github_answers.extend((a.repo, a.branch, a.status if whole is None else whole.status) for a in asked)
        if whole is None:
            body: dict[str, Any] = {"data": result.data}
            if result.errors:
                body["errors"] = [_formatted(e) for e in result.errors]
            return _Reply(200, body, GitHubAnswer(), delay)
        if whole.drop:
            return _Reply(0, None, whole, delay)
        if whole.status == 200:  # a primary rate limit: HTTP 200, the error in the body
            error = {"type": "RATE_LIMITED", "message": "API rate limit already exceeded for user ID 1."}
            return _Reply(200, {"errors": [error]}, whole, delay)
        message = _MESSAGES.get(whole.status, "Error")
        if whole.status in (403, 429) and whole.remaining == 0:
            message = "API rate limit exceeded for user ID 1."
        return _Reply(
            whole.status, {"message": message, "documentation_url": _DOCS, "status": str(whole.status)}, whole, delay
        )

    def start_github(self) -> str:
        sources = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.monotonic()
                sources.github_requests.append(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                reply = sources.reply(self.path, self.headers.get("Authorization"), self.rfile.read(length))
                wait = max(reply.delay, sources.latency - (time.monotonic() - arrived))
                if wait > 0:
                    sources._stopping.wait(wait)
                if reply.body is None:
                    self.close_connection = True
                    return  # nothing written: the client sees the connection closed without a response
                # The client may have given up first (its read timeout): what a timeout looks like from here.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._send(reply.status, reply.body, sources._headers(reply.answer))

            def _send(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return

        self._stopping.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="sandbox-github", daemon=True
        ).start()  # a short poll: stop_github() returns within it
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _headers(self, answer: GitHubAnswer) -> dict[str, str]:
        """GitHub sends its rate-limit headers on every answer; a scripted limit sets `remaining` and `reset`."""
        now = int(self._now())
        remaining = _RATE_LIMIT - 1 if answer.remaining is None else answer.remaining
        reset = now + (answer.reset_after if answer.reset_after is not None else 3600)
        headers = {
            "x-ratelimit-limit": str(_RATE_LIMIT),
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-reset": str(reset),
            "x-ratelimit-used": str(_RATE_LIMIT - remaining),
            "x-ratelimit-resource": "graphql",
        }
        if answer.retry_after is not None:
            headers["retry-after"] = str(answer.retry_after)
        return headers

    def stop_github(self) -> None:
        self._stopping.set()  # a delayed answer stops waiting
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


# --- the GraphQL resolvers: graphql-core's default resolver calls these methods with the field's arguments ----------


@dataclass
class _Asked:
    repo: str
    branch: str
    answer: GitHubAnswer
    status: int  # as answered: 200 (a head), 404 (ref: null), 403 (FORBIDDEN), or the whole query's status


class _Query:
    def __init__(self, sources: Sources, asked: list[_Asked]) -> None:
        self._sources, self._asked = sources, asked

    def repository(self, info: Any, owner: str, name: str, followRenames: bool = True) -> _Repository:
        repo = f"{owner}/{name}"
        if not any(known == repo for known, _ in self._sources.github_heads):
            raise _GitHubError("NOT_FOUND", f"Could not resolve to a Repository with the name '{repo}'.")
        return _Repository(self._sources, self._asked, repo)


class _Repository:
    def __init__(self, sources: Sources, asked: list[_Asked], repo: str) -> None:
        self._sources, self._asked = sources, asked
        self.nameWithOwner = repo
        self.name = repo.split("/", 1)[1]

    def ref(self, info: Any, qualifiedName: str) -> dict[str, Any] | None:
        # "Fully qualified matches are checked in order (refs/heads/master) before falling back onto checks for short
        # name matches (master)": the emulator knows branches only.
        branch = qualifiedName.removeprefix("refs/heads/")
        answer = self._sources._next_answer((self.nameWithOwner, branch))
        asked = _Asked(self.nameWithOwner, branch, answer, answer.status)
        self._asked.append(asked)
        if not answer.in_band:
            return None  # the whole query gets this answer instead
        if answer.status == 403:
            raise _GitHubError("FORBIDDEN", "Resource not accessible by personal access token")
        sha = self._sources.github_heads.get((self.nameWithOwner, branch)) if answer.status == 200 else None
        asked.status = 200 if sha else 404
        if not sha:
            return None
        return {"name": branch, "prefix": "refs/heads/", "target": {"__typename": "Commit", "oid": sha}}


@functools.lru_cache(maxsize=64)
def _checked(query: str) -> tuple[DocumentNode | None, tuple[GraphQLError, ...]]:
    """The parsed query, or why GitHub would refuse it. Cached by text: a client's batches of one size share their
    query text (only the variables differ), and graphql-core takes ~0.1 s to parse and validate 100 aliases."""
    try:
        document = parse(query)
    except GraphQLError as exc:
        return None, (exc,)
    refused = tuple(validate(_SCHEMA, document))
    return (None, refused) if refused else (document, ())


def _formatted(error: GraphQLError) -> dict[str, Any]:
    """A GraphQL error as GitHub sends it: the spec's fields, plus GitHub's `type` for its own errors."""
    formatted = dict(error.formatted)
    if isinstance(error.original_error, _GitHubError):
        return {"type": error.original_error.kind, **formatted}
    return formatted
