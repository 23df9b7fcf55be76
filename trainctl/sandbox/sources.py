"""Emulated sources: CodeCommit branches (GetBranch) and a loopback stand-in for GitHub's REST API.

The scenario decides each service's head commit; the fleet decides where it lives. GitHub answers on 127.0.0.1 (the
stack's `GitHubApiUrl` parameter points there), so the real `requests` code path runs; path segments are decoded
as GitHub decodes them, so a branch name the adapter fails to encode resolves to a different (or no) branch here too.

A scenario may script GitHub's bad days per (owner/repo, branch): `github_script[(repo, branch)] = [500, 200]`
answers the next request with a 500, the one after with the head, and every later one as usual. An entry is a status
code or a `GitHubAnswer` (rate-limit headers, `Retry-After`, a delay longer than the client's read timeout, a
dropped connection).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from trainctl.sandbox.emulators import ApiError, Route

if TYPE_CHECKING:
    from trainctl.sandbox.emulators import World

_DOCS = "https://docs.github.com/rest/branches/branches#get-a-branch"
_RATE_LIMIT = 5000  # GitHub REST "Rate limits for the REST API": 5,000 requests per hour for a personal access token
# GitHub's error bodies ({"message", "documentation_url", "status"}), by status.
_MESSAGES = {
    401: "Bad credentials",
    403: "Resource not accessible by personal access token",
    404: "Branch not found",
    429: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
    500: "Server Error",
    502: "Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class GitHubAnswer:
    """One scripted answer to `GET /repos/{owner}/{repo}/branches/{branch}`.

    `status` 200 answers with the branch's head (404 if it has none). The rate-limit fields follow GitHub REST,
    "Rate limits for the REST API": a primary limit is 403 or 429 with `x-ratelimit-remaining: 0` and
    `x-ratelimit-reset` (UTC epoch seconds, here: the virtual now + `reset_after`); a secondary one carries
    `retry-after`. `delay` holds the answer for that many wall seconds (the virtual clock does not move while the
    caller waits on its socket): longer than the client's read timeout, it is a timeout. `drop` closes the
    connection without an answer.
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


class Sources:
    def __init__(self, world: World) -> None:
        self.world = world
        self.branches: dict[tuple[str, str], str] = {}  # CodeCommit (repository, branch) -> commit
        self.github_heads: dict[tuple[str, str], str] = {}  # GitHub (owner/repo, branch) -> commit
        # GitHub (owner/repo, branch) -> the next answers, consumed one per request; then the head as usual.
        self.github_script: dict[tuple[str, str], list[int | GitHubAnswer]] = {}
        self.github_requests: list[str] = []  # raw request paths, as sent
        self.github_answers: list[tuple[str, str, int]] = []  # (owner/repo, branch, status) as decoded and answered
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

    def answer_branch(self, path: str) -> tuple[GitHubAnswer, tuple[str, str] | None]:
        """Parse a raw request path the way GitHub routes it: `/repos/{owner}/{repo}/branches/{branch}`, each segment
        percent-decoded on its own. The branch takes the rest of the path: GitHub resolves `feature/x` sent either as
        `feature%2Fx` or unencoded, as `gh api repos/o/r/branches/feature%2Fx` and octokit (which encodes `{branch}`
        with encodeURIComponent) rely on. A `#` or `?` the client did not encode never reaches the server."""
        parts = urlsplit(path).path.strip("/").split("/")
        if len(parts) < 5 or parts[0] != "repos" or parts[3] != "branches":
            return GitHubAnswer(status=404), None
        key = (f"{unquote(parts[1])}/{unquote(parts[2])}", "/".join(unquote(p) for p in parts[4:]))
        return self._next_answer(key), key

    def start_github(self) -> str:
        sources = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                sources.github_requests.append(self.path)
                answer, key = sources.answer_branch(self.path)
                if answer.delay > 0:
                    sources._stopping.wait(answer.delay)
                if answer.drop:
                    self.close_connection = True
                    return  # nothing written: the client sees the connection closed without a response
                status, body = answer.status, None
                if key is not None and status == 200:
                    sha = sources.github_heads.get(key)
                    if sha:
                        body = {"name": key[1], "commit": {"sha": sha}, "protected": False}
                    else:
                        status = 404
                if key is not None:
                    sources.github_answers.append((key[0], key[1], status))
                if body is None:
                    message = _MESSAGES.get(status, "Error")
                    if status in (403, 429) and answer.remaining == 0:
                        message = "API rate limit exceeded for user ID 1."
                    body = {"message": message, "documentation_url": _DOCS, "status": str(status)}
                # The client may have given up first (its read timeout): what a timeout looks like from here.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._send(status, body, sources._headers(answer))

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
            "x-ratelimit-resource": "core",
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
