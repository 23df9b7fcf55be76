"""Emulated sources: CodeCommit branches (GetBranch) and a loopback stand-in for GitHub's REST API.

The scenario decides each service's head commit; the fleet decides where it lives. GitHub answers on 127.0.0.1 (the
stack's `GitHubApiUrl` parameter points there), so the real `requests` code path runs; path segments are decoded
as GitHub decodes them, so a branch name the adapter fails to encode resolves to a different (or no) branch here too.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from trainctl.sandbox.emulators import ApiError, Route

if TYPE_CHECKING:
    from trainctl.sandbox.emulators import World


class Sources:
    def __init__(self, world: World) -> None:
        self.world = world
        self.branches: dict[tuple[str, str], str] = {}  # CodeCommit (repository, branch) -> commit
        self.github_heads: dict[tuple[str, str], str] = {}  # GitHub (owner/repo, branch) -> commit
        self.github_requests: list[str] = []
        self._server: ThreadingHTTPServer | None = None

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

    def start_github(self) -> str:
        sources = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                sources.github_requests.append(self.path)
                raw = urlsplit(self.path).path
                # GET /repos/{owner}/{repo}/branches/{branch}: each segment percent-decoded on its own.
                parts = raw.strip("/").split("/")
                if len(parts) == 5 and parts[0] == "repos" and parts[3] == "branches":
                    repo, branch = f"{unquote(parts[1])}/{unquote(parts[2])}", unquote(parts[4])
                    sha = sources.github_heads.get((repo, branch))
                    if sha:
                        self._send(200, {"name": branch, "commit": {"sha": sha}})
                        return
                self._send(404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="sandbox-github", daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop_github(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
