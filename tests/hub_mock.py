"""A loopback HTTP server that stands in for the subset of the Hugging Face Hub API that publishing uses (repo
creation, YAML validation, preupload, NDJSON commits, commit listing, collections). Every request is recorded in
`calls`; `fail` injects one failure: `(method, path substring)` answered once with HTTP 422 (not retried)."""

import base64
import json
import threading
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    def __init__(self):
        self.repos: dict[str, dict] = {}
        self.collections: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []
        self.headers: list[dict] = []  # request headers, in order (the Authorization header carries the token)
        self.fail: tuple[str, str] | None = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def commits(self, repo_id: str) -> list[dict]:
        return self.repos[repo_id]["commits"]

    # --- request handling -------------------------------------------------------------------------------------
    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, body) -> None:
                extra = body.pop("_headers", {}) if isinstance(body, dict) else {}
                data = json.dumps(body).encode()
                self.send_response(status)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self):
                hub.calls.append(("GET", self.path.split("?")[0]))
                self._reply(*hub.route("GET", self.path.split("?")[0], b"", self.headers))

            def do_POST(self):
                body = self._body()
                hub.calls.append(("POST", self.path.split("?")[0]))
                self._reply(*hub.route("POST", self.path.split("?")[0], body, self.headers))

        return Handler

    def route(self, method: str, path: str, body: bytes, headers) -> tuple[int, object]:
        self.headers.append(dict(headers))
        if self.fail and method == self.fail[0] and self.fail[1] in path:
            self.fail = None
            return 422, {"error": "injected failure"}
        if "authorization" not in {k.lower() for k in headers}:
            return 401, {"error": "no token"}
        if path == "/api/repos/create":
            return self._create_repo(json.loads(body))
        if path == "/api/validate-yaml":
            return 200, {}
        if path.startswith("/api/collections"):
            return self._collections(method, path.removeprefix("/api/collections").strip("/"), body)
        if path.startswith("/api/models/"):
            parts = path.removeprefix("/api/models/").split("/")
            repo_id, action = "/".join(parts[:2]), parts[2] if len(parts) > 2 else ""
            if repo_id not in self.repos:
                return 404, {"error": "Repository not found", "_headers": {"X-Error-Code": "RepoNotFound"}}
            return self._repo_action(repo_id, action, body)
        return 404, {"error": f"no route for {method} {path}"}

    def _create_repo(self, payload: dict) -> tuple[int, object]:
        repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
        if repo_id in self.repos:
            return 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}
        self.repos[repo_id] = {"private": payload.get("private", False), "files": {}, "commits": []}
        self._commit(repo_id, "initial commit", "", {})
        return 200, {"url": f"{self.url}/{repo_id}"}

    def _commit(self, repo_id: str, title: str, message: str, files: dict) -> str:
        oid = uuid.uuid4().hex + uuid.uuid4().hex[:8]
        self.repos[repo_id]["files"].update(files)
        self.repos[repo_id]["commits"].insert(
            0,
            {
                "id": oid,
                "title": title,
                "message": message,
                "authors": [{"user": "tester"}],
                "date": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            },
        )
        return oid

    def _repo_action(self, repo_id: str, action: str, body: bytes) -> tuple[int, object]:
        if action == "preupload":
            files = json.loads(body)["files"]
            return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
        if action == "commit":
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            header = next(line["value"] for line in lines if line["key"] == "header")
            files = {
                line["value"]["path"]: base64.b64decode(line["value"]["content"])
                for line in lines
                if line["key"] == "file"
            }
            oid = self._commit(repo_id, header["summary"], header.get("description", ""), files)
            return 200, {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None}
        if action == "commits":
            return 200, self.repos[repo_id]["commits"]
        if action in ("", "revision"):  # repo_info
            repo = self.repos[repo_id]
            return 200, {
                "id": repo_id,
                "modelId": repo_id,
                "sha": repo["commits"][0]["id"],
                "private": repo["private"],
                "siblings": [{"rfilename": name} for name in repo["files"]],
            }
        return 404, {"error": f"unknown action {action}"}

    def _collection_json(self, slug: str) -> dict:
        c = self.collections[slug]
        return {
            "slug": slug,
            "title": c["title"],
            "owner": {"name": c["namespace"]},
            "description": c["description"],
            "items": [
                {"_id": f"{i}", "id": item, "type": "model", "position": i} for i, item in enumerate(c["items"])
            ],
            "lastUpdated": "2026-11-22T00:00:00.000Z",
            "position": 0,
            "private": c["private"],
            "theme": "blue",
            "upvotes": 0,
        }

    def _collections(self, method: str, rest: str, body: bytes) -> tuple[int, object]:
        if method == "POST" and rest == "":
            payload = json.loads(body)
            for slug, c in self.collections.items():
                if (c["title"], c["namespace"]) == (payload["title"], payload["namespace"]):
                    return 409, {"error": "Collection already exists", "slug": slug}
            slug = f"{payload['namespace']}/{payload['title'].lower().replace(' ', '-')}-{uuid.uuid4().hex[:12]}"
            self.collections[slug] = {
                "title": payload["title"],
                "namespace": payload["namespace"],
                "items": [],
                "description": payload.get("description"),
                "private": payload.get("private"),
            }
            return 200, self._collection_json(slug)
        if method == "POST" and rest.endswith("/items"):
            slug = rest.removesuffix("/items")
            item = json.loads(body)["item"]["id"]
            if item in self.collections[slug]["items"]:
                return 409, {"error": "Item already in collection"}
            self.collections[slug]["items"].append(item)
            return 200, self._collection_json(slug)
        if method == "GET" and rest in self.collections:
            return 200, self._collection_json(rest)
        return 404, {"error": "Collection not found"}
