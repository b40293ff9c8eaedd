"""A small Hub-API server on 127.0.0.1 that the real huggingface_hub client talks to (``HF_ENDPOINT``).

Enough of the Hub for ``create_repo``, ``upload_folder`` / ``create_commit`` (preupload + NDJSON
commit, every file "regular", i.e. inline base64: no LFS, no Xet), ``model_info`` /
``repo_info``, ``list_repo_files`` (tree), ``file_exists`` and ``hf_hub_download``
(HEAD / GET ``/{repo}/resolve/{rev}/{file}`` with ``X-Repo-Commit`` and ``ETag``).
Repos live in memory; every commit gets a fresh 40-hex sha, so revisions can be pinned.

    with HubServer() as server:
        HfApi(endpoint=server.endpoint).create_repo("org/repo")

Run ``python tests/hub_server.py [port]`` to serve by hand.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_API_REPO = re.compile(
    r"^/api/models/(?P<repo>[^/]+/[^/]+)"
    r"(?:/(?P<action>revision|preupload|commit|tree|branch)/(?P<rev>[^/]+)(?P<rest>/.*)?)?$"
)


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob (what the Hub sends as ETag for a regular file)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    """One model repo: commits (sha -> {path: bytes}) and branches (name -> sha)."""

    repo_id: str
    private: bool = False
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        revision = unquote(revision)
        if revision in self.branches:
            return self.branches[revision]
        return revision if revision in self.commits else None


class HubState:
    """In-memory repos behind a lock; records every request as ``(method, path)``."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def create(self, repo_id: str, private: bool) -> bool:
        with self.lock:
            if repo_id in self.repos:
                return False
            repo = Repo(repo_id, private)
            sha = uuid.uuid4().hex + uuid.uuid4().hex[:8]
            repo.commits[sha] = {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}
            repo.branches["main"] = sha
            self.repos[repo_id] = repo
            return True

    def commit(self, repo_id: str, branch: str, lines: list[dict[str, Any]]) -> str:
        with self.lock:
            repo = self.repos[repo_id]
            files = dict(repo.commits[repo.branches[branch]]) if branch in repo.branches else {}
            for line in lines:
                value = line.get("value", {})
                if line["key"] == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif line["key"] == "deletedFile":
                    files.pop(value["path"], None)
                elif line["key"] == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: b for p, b in files.items() if not p.startswith(prefix)}
                elif line["key"] == "lfsFile":
                    raise ValueError("this test Hub takes regular (inline) files only")
            sha = uuid.uuid4().hex + uuid.uuid4().hex[:8]
            repo.commits[sha] = files
            repo.branches[branch] = sha
            return sha


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # --- plumbing -------------------------------------------------------------------------
    @property
    def state(self) -> HubState:
        return self.server.state

    def _endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _error(self, status: int, code: str, message: str, head: bool = False, extra: dict | None = None) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message, **(extra or {})}
        self._send(status, json.dumps({"error": message}).encode(), headers, head=head)

    def _route(self, method: str) -> None:
        path = urlsplit(self.path).path
        self.state.requests.append((method, path))
        try:
            self._dispatch(method, path)
        except Exception as error:  # a bug here should read as a 500, not a hang
            self._error(500, "ServerError", f"{type(error).__name__}: {error}")

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_POST(self) -> None:
        self._route("POST")

    # --- routes ---------------------------------------------------------------------------
    def _dispatch(self, method: str, path: str) -> None:
        if method == "POST" and path == "/api/repos/create":
            return self._create_repo()
        if method == "POST" and path == "/api/validate-yaml":
            return self._validate_yaml()
        if match := _RESOLVE.match(path):
            return self._resolve(match["repo"], match["rev"], unquote(match["path"]), head=method == "HEAD")
        if match := _API_REPO.match(path):
            repo = self.state.repos.get(match["repo"])
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository Not Found for url: {path}", method == "HEAD")
            action, rev = match["action"], match["rev"] or "main"
            if method == "GET" and action in (None, "revision"):
                return self._info(repo, rev)
            if method == "GET" and action == "tree":
                return self._tree(repo, rev, (match["rest"] or "").strip("/"))
            if method == "POST" and action == "preupload":
                return self._preupload()
            if method == "POST" and action == "commit":
                return self._commit(repo, unquote(rev))
            if method == "POST" and action == "branch":
                return self._branch(repo, unquote(rev))
        self._error(404, "NotFound", f"no route for {method} {path}", method == "HEAD")

    def _create_repo(self) -> None:
        payload = json.loads(self._body() or b"{}")
        repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
        created = self.state.create(repo_id, payload.get("visibility") == "private" or bool(payload.get("private")))
        body = {"url": f"{self._endpoint()}/{repo_id}", "name": repo_id, "id": repo_id}
        if not created:
            body["error"] = "You already created this model repo"
        self._json(200 if created else 409, body)

    def _validate_yaml(self) -> None:
        content = json.loads(self._body())["content"]
        match = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        try:
            meta = yaml.safe_load(match[1]) if match else {}
        except yaml.YAMLError as error:
            return self._json(400, {"error": f"Invalid YAML in README.md: {error}"})
        if not isinstance(meta, dict):
            return self._json(400, {"error": "README.md metadata must be a mapping"})
        self._json(200, {"errors": [], "warnings": []})

    def _info(self, repo: Repo, rev: str) -> None:
        sha = repo.resolve(rev)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        self._json(200, {
            "id": repo.repo_id, "modelId": repo.repo_id, "author": repo.repo_id.split("/")[0],
            "sha": sha, "private": repo.private, "disabled": False, "gated": False,
            "lastModified": now, "createdAt": now, "tags": [], "downloads": 0, "likes": 0,
            "siblings": [{"rfilename": p} for p in sorted(repo.commits[sha])],
        })

    def _tree(self, repo: Repo, rev: str, folder: str) -> None:
        sha = repo.resolve(rev)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        prefix = f"{folder}/" if folder else ""
        entries = [
            {"type": "file", "path": p, "size": len(b), "oid": git_blob_sha1(b)}
            for p, b in sorted(repo.commits[sha].items())
            if p.startswith(prefix)
        ]
        self._json(200, entries)

    def _preupload(self) -> None:
        files = json.loads(self._body())["files"]
        self._json(200, {"files": [
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in files
        ]})

    def _commit(self, repo: Repo, branch: str) -> None:
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        sha = self.state.commit(repo.repo_id, branch, lines)
        self._json(200, {
            "commitUrl": f"{self._endpoint()}/{repo.repo_id}/commit/{sha}",
            "commitOid": sha, "pullRequestUrl": None, "success": True,
        })

    def _branch(self, repo: Repo, branch: str) -> None:
        payload = json.loads(self._body() or b"{}")
        with self.state.lock:
            if branch in repo.branches:
                return self._error(409, "BranchExists", f"Branch {branch} already exists")
            start = repo.resolve(payload.get("startingPoint") or "main")
            repo.branches[branch] = start
        self._json(200, {})

    def _resolve(self, repo_id: str, rev: str, path: str, head: bool) -> None:
        repo = self.state.repos.get(repo_id)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository Not Found", head)
        sha = repo.resolve(rev)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
        data = repo.commits[sha].get(path)
        if data is None:
            return self._error(404, "EntryNotFound", f"Entry not found: {path}", head, {"X-Repo-Commit": sha})
        headers = {"Content-Type": "application/octet-stream", "X-Repo-Commit": sha, "ETag": f'"{git_blob_sha1(data)}"'}
        self._send(200, data, headers, head=head)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: HubState, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.state = state


class HubServer:
    """The server in a daemon thread; ``endpoint`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, port: int = 0) -> None:
        self.state = HubState()
        self._server = _Server(self.state, port)
        self._thread = threading.Thread(target=self._server.serve_forever, name="hub-server", daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "HubServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    import sys

    with HubServer(int(sys.argv[1]) if len(sys.argv) > 1 else 0) as hub:
        print(hub.endpoint, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
