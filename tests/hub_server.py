"""A loopback HTTP server that is a *test double of the Hugging Face Hub's API*, not the Hub.

It speaks the routes that the installed huggingface_hub client (2.x, httpx2) and timm use to create a repo, commit
files, download them and list models, so that tests run the real client code end to end with ``HF_ENDPOINT``
pointing at ``http://127.0.0.1:<port>``:

- ``GET  /api/whoami-v2``                                  token -> user name (401 on a bad token)
- ``POST /api/repos/create``                               409 if it exists, 403 outside the user's namespace
- ``POST /api/validate-yaml``                              the card's front matter must be a YAML mapping
- ``POST /api/models/{repo}/preupload/{rev}``              every file is uploaded in "regular" mode (no LFS/Xet)
- ``POST /api/models/{repo}/commit/{rev}``                 NDJSON header/file/deletedFile lines -> new commit
- ``POST /api/models/{repo}/branch/{branch}``              a branch starting at the head of main
- ``GET  /api/models`` and ``/api/models/{repo}[/revision/{rev}]``   listing (tag filters, author, search,
  cardData, ``expand``, pages of 1,000 linked by ``Link: next``) and model info, with the card data parsed from
  README.md like the Hub does
- ``GET  /api/models/{repo}/tree/{rev}``                   the file list snapshot_download asks for
- ``HEAD|GET /{repo}/resolve/{rev}/{path}``                file download with X-Repo-Commit / ETag headers
- ``POST /api/models/{repo}/commit/main?create_pr=1``      a pull request (``refs/pr/N``), open to any signed-in user
- ``GET  /api/models/{repo}/discussions``                  the pull requests, with their authors, newest first, 50 a
  page (``?p=N``; ``count`` and ``start`` say where the page is), open, merged and closed alike
- ``GET  /api/models/{repo}/commits/{rev}``                the commits of a revision, newest first, with authors
- ``GET  /api/organizations/{org}/members``                the members of an organisation (404 for a user)
- ``GET  /api/users/{name}/overview``                      a user's overview (404 for an organisation or nobody)

Only the standard library serves HTTP (http.server + threading); README front matter is parsed with PyYAML, which the
real Hub also does server side. State lives in memory; ``requests`` records (method, path) for assertions.
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
from pathlib import Path
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import yaml

#: models per page of the listing, the most the Hub's listing returns at once
PAGE_SIZE = 1000
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DISCUSSIONS_PER_PAGE = 50


@dataclass
class Repo:
    owner: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)       # branch -> commit sha
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> full file snapshot
    history: list[str] = field(default_factory=list)              # commit shas, oldest first
    pulls: list[dict] = field(default_factory=list)               # num, title, author, status
    lineage: dict[str, tuple] = field(default_factory=dict)       # sha -> (parent sha, author)


def card_data(readme: bytes | None) -> dict | None:
    """The YAML front matter of a README, or None."""
    if not readme:
        return None
    text = readme.decode("utf-8", errors="replace")
    if not text.startswith("---"):
        return None
    end = text.find("\n---", 3)
    if end < 0:
        return None
    data = yaml.load(text[3:end], Loader=_YAML_LOADER)  # noqa: S506 (a safe loader)
    return data if isinstance(data, dict) else None


class FakeHub:
    """In-memory Hub state plus a threaded HTTP server on 127.0.0.1 (free port)."""

    def __init__(self, tokens: dict[str, str] | None = None, orgs: dict[str, list[str]] | None = None) -> None:
        self.tokens = tokens or {}                    # token -> user
        self.orgs = orgs or {}                        # user -> org names the user may write to
        self.quirks: dict[str, bytes] = {}            # route ('whoami', 'create', 'model_info') -> a 200 body to send
        self.encoded: dict[str, tuple[str, bytes]] = {}  # file path -> (Content-Encoding, body) a GET of it gets
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.queries: list[str] = []                  # the query string of each request, in the same order
        self.lock = threading.Lock()
        self.card_data: dict[str, dict] = {}          # commit -> its README's front matter, parsed once
        self.card_data_in_listing = True              # False: a listing that never carries cardData
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "FakeHub":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    # --- state helpers used by the handler and by tests --------------------------------------------------------
    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return repo.commits[self.resolve_revision(repo, revision)]

    @staticmethod
    def resolve_revision(repo: Repo, revision: str) -> str | None:
        if revision in repo.branches:
            return repo.branches[revision]
        return revision if revision in repo.commits else None

    def may_write(self, user: str | None, repo_id: str) -> bool:
        namespace = repo_id.split("/")[0]
        return user is not None and (namespace == user or namespace in self.orgs.get(user, []))

    def may_read(self, user: str | None, repo_id: str) -> bool:
        repo = self.repos.get(repo_id)
        return repo is not None and (not repo.private or self.may_write(user, repo_id))

    def commit(self, repo_id: str, branch: str, changes: dict[str, bytes | None], message: str,
               author: str = "system") -> str:
        repo = self.repos[repo_id]
        parent = repo.branches.get(branch)
        snapshot = dict(repo.commits[parent]) if parent else {}
        for path, content in changes.items():
            if content is None:
                snapshot = {p: c for p, c in snapshot.items() if p != path and not p.startswith(path.rstrip("/") + "/")}
            else:
                snapshot[path] = content
        digest = hashlib.sha1((parent or "").encode() + message.encode())
        for path in sorted(snapshot):
            digest.update(path.encode() + hashlib.sha1(snapshot[path]).digest())
        sha = digest.hexdigest()
        repo.commits[sha] = snapshot
        repo.branches[branch] = sha
        repo.history.append(sha)
        repo.lineage[sha] = (parent, author)
        return sha

    def model_json(self, repo_id: str, sha: str, *, siblings: bool) -> dict:
        repo = self.repos[repo_id]
        snapshot = repo.commits.get(sha, {})
        if sha not in self.card_data:
            self.card_data[sha] = card_data(snapshot.get("README.md")) or {}
        data = self.card_data[sha]
        tags = list(data.get("tags") or [])
        if data.get("library_name"):
            tags.append(data["library_name"])
        datasets = data.get("datasets") or []
        tags += [f"dataset:{d}" for d in ([datasets] if isinstance(datasets, str) else datasets)]
        if data.get("license"):
            tags.append(f"license:{data['license']}")
        item = {
            "id": repo_id, "modelId": repo_id, "author": repo.owner, "sha": sha, "private": repo.private,
            "tags": sorted(set(tags)), "pipeline_tag": data.get("pipeline_tag"), "library_name": data.get("library_name"),
            "lastModified": "2026-01-01T00:00:00.000Z", "downloads": 0, "likes": 0,
        }
        if data:
            item["cardData"] = data
            if "model-index" in data:
                item["model-index"] = data["model-index"]
        if siblings:
            item["siblings"] = [{"rfilename": p, "size": len(c)} for p, c in sorted(snapshot.items())]
        item["author"] = repo.owner
        return item


def _handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        # --- plumbing ------------------------------------------------------------------------------------------
        def _user(self) -> str | None:
            auth = self.headers.get("Authorization", "")
            return hub.tokens.get(auth[7:]) if auth.startswith("Bearer ") else None

        def _has_bad_token(self) -> bool:
            auth = self.headers.get("Authorization", "")
            return auth.startswith("Bearer ") and auth[7:] not in hub.tokens

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, payload=None, *, headers: dict | None = None, raw: bytes | None = None,
                  head: bool = False) -> None:
            body = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream" if raw is not None else "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _error(self, status: int, message: str, code: str | None = None, head: bool = False) -> None:
            headers = {"X-Error-Message": message}
            if code:
                headers["X-Error-Code"] = code
            self._send(status, {"error": message}, headers=headers, head=head)

        def _repo_or_error(self, repo_id: str, head: bool = False) -> Repo | None:
            if self._has_bad_token():
                self._error(401, "Invalid credentials in Authorization header", head=head)
                return None
            if not hub.may_read(self._user(), repo_id):
                self._error(404, "Repository not found", "RepoNotFound", head=head)
                return None
            return hub.repos[repo_id]

        def _revision_or_error(self, repo_id: str, revision: str, head: bool = False) -> tuple[Repo, str] | None:
            """The repo and the commit ``revision`` names, or None after answering with the right error."""
            repo = self._repo_or_error(repo_id, head=head)
            if repo is None:
                return None
            sha = hub.resolve_revision(repo, revision)
            if sha is None:
                self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound", head=head)
                return None
            return repo, sha

        def _writable_repo(self, repo_id: str) -> Repo | None:
            user = self._user()
            if user is None:
                self._error(401, "Invalid credentials in Authorization header")
                return None
            if repo_id not in hub.repos:
                self._error(404, "Repository not found", "RepoNotFound")
                return None
            if not hub.may_write(user, repo_id):
                self._error(403, f"You don't have the rights to write to {repo_id}")
                return None
            return hub.repos[repo_id]

        # --- dispatch ------------------------------------------------------------------------------------------
        def do_HEAD(self) -> None:
            self._dispatch("HEAD")

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def _dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            parts = [unquote(p) for p in url.path.strip("/").split("/")]
            query = parse_qs(url.query)
            body = self._body()  # always drain it: leftover bytes would corrupt the next keep-alive request
            hub.requests.append((method, url.path))
            hub.queries.append(url.query)
            with hub.lock:
                if method == "GET" and parts[:2] == ["api", "whoami-v2"]:
                    return self._whoami()
                if method == "GET" and parts[:2] == ["api", "organizations"] and parts[3:] == ["members"]:
                    return self._members(parts[2])
                if method == "GET" and parts[:2] == ["api", "users"] and parts[3:] == ["overview"]:
                    return self._user_overview(parts[2])
                if method == "POST" and parts[:3] == ["api", "repos", "create"]:
                    return self._create(json.loads(body or b"{}"))
                if method == "POST" and parts[:2] == ["api", "validate-yaml"]:
                    return self._validate_yaml(json.loads(body or b"{}"))
                if parts[:2] == ["api", "models"] and len(parts) >= 4:
                    repo_id = "/".join(parts[2:4])
                    rest = parts[4:]
                    pull = (query.get("create_pr") or ["0"])[0] in ("1", "true", "True")
                    if method == "POST" and rest[:1] == ["preupload"]:
                        return self._preupload(repo_id, json.loads(body or b"{}"), pull)
                    if method == "POST" and rest[:1] == ["commit"]:
                        return self._commit(repo_id, "/".join(rest[1:]), body, pull)
                    if method == "GET" and rest[:1] == ["discussions"]:
                        return self._discussions(repo_id, int((query.get("p") or ["0"])[0]))
                    if method == "POST" and rest[:1] == ["branch"]:
                        return self._branch(repo_id, "/".join(rest[1:]))
                    if method == "GET" and rest[:1] == ["commits"] and len(rest) >= 2:
                        return self._commits(repo_id, "/".join(rest[1:]))
                    if method == "GET" and rest[:1] == ["tree"] and len(rest) >= 2:
                        return self._tree(repo_id, rest[1], "/".join(rest[2:]))
                    if method == "GET" and (not rest or rest[0] == "revision"):
                        return self._model_info(repo_id, "/".join(rest[1:]) or "main")
                if method == "GET" and parts == ["api", "models"]:
                    return self._list(query)
                if method in ("GET", "HEAD") and len(parts) >= 5 and parts[2] == "resolve":
                    return self._resolve(method, "/".join(parts[:2]), parts[3], "/".join(parts[4:]))
                self._error(404, f"no route for {method} {url.path} in the Hub test double")

        # --- routes --------------------------------------------------------------------------------------------
        def _quirk(self, route: str) -> bool:
            """Answer ``route`` with the body a test planted (a hostile Hub), if any."""
            if route not in hub.quirks:
                return False
            self._send(200, raw=hub.quirks[route])
            return True

        def _whoami(self) -> None:
            if self._quirk("whoami"):
                return
            user = self._user()
            if user is None:
                return self._error(401, "Invalid credentials in Authorization header")
            orgs = [{"name": o, "type": "org"} for o in hub.orgs.get(user, [])]
            self._send(200, {"type": "user", "name": user, "orgs": orgs,
                             "auth": {"type": "access_token", "accessToken": {"role": "write"}}})

        def _create(self, payload: dict) -> None:
            if self._quirk("create"):
                return
            user = self._user()
            if user is None:
                return self._error(401, "Invalid credentials in Authorization header")
            name, namespace = payload.get("name", ""), payload.get("organization") or user
            repo_id = f"{namespace}/{name}"
            if not hub.may_write(user, repo_id):
                return self._error(403, f"You don't have the rights to create a model under the namespace {namespace}")
            if repo_id in hub.repos:
                return self._send(409, {"error": "You already created this model repo", "url": f"{hub.url}/{repo_id}"},
                                  headers={"X-Error-Message": "You already created this model repo"})
            hub.repos[repo_id] = Repo(owner=namespace, private=payload.get("visibility") == "private"
                                      or bool(payload.get("private")))
            hub.commit(repo_id, "main", {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
                       "initial commit")
            self._send(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id})

        def _validate_yaml(self, payload: dict) -> None:
            content = payload.get("content", "")
            try:
                data = card_data(content.encode())
            except yaml.YAMLError as exc:
                return self._send(400, {"error": f"Invalid YAML: {exc}"}, headers={"X-Error-Message": "Invalid YAML"})
            if content.startswith("---") and data is None:
                return self._send(400, {"error": "metadata must be a mapping"},
                                  headers={"X-Error-Message": "metadata must be a mapping"})
            self._send(200, {"errors": [], "warnings": []})

        def _preupload(self, repo_id: str, payload: dict, pull: bool = False) -> None:
            if (self._readable_by_user(repo_id) if pull else self._writable_repo(repo_id)) is None:
                return
            files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in payload["files"]]
            self._send(200, {"files": files, "commitOid": hub.repos[repo_id].branches["main"]})

        def _readable_by_user(self, repo_id: str) -> Repo | None:
            """Anyone signed in may open a pull request on a repo they can see."""
            if self._user() is None:
                self._error(401, "Invalid credentials in Authorization header")
                return None
            return self._repo_or_error(repo_id)

        def _discussions(self, repo_id: str, page: int) -> None:
            repo = self._repo_or_error(repo_id)
            if repo is None:
                return
            items = [{"num": p["num"], "title": p["title"], "status": p["status"], "isPullRequest": True,
                      "author": {"name": p["author"]}, "repo": {"name": repo_id, "type": "model"},
                      "createdAt": "2026-01-01T00:00:00.000Z", "pinned": False, "numComments": 1, "topReactions": []}
                     for p in reversed(repo.pulls)]
            start = page * DISCUSSIONS_PER_PAGE
            closed = sum(p["status"] == "closed" for p in repo.pulls)
            self._send(200, {"discussions": items[start:start + DISCUSSIONS_PER_PAGE], "count": len(items),
                             "start": start, "numClosedDiscussions": closed})

        def _commits(self, repo_id: str, revision: str) -> None:
            resolved = self._revision_or_error(repo_id, revision)
            if resolved is None:
                return
            repo, sha = resolved
            items = []
            while sha is not None and len(items) < 50:     # newest first, one page
                parent, author = repo.lineage.get(sha, (None, "system"))
                items.append({"id": sha, "title": "", "message": "", "date": "2026-01-01T00:00:00.000Z",
                              "authors": [{"user": author}]})
                sha = parent
            self._send(200, items)

        def _members(self, org: str) -> None:
            members = sorted(user for user, orgs in hub.orgs.items() if org in orgs)
            if not members:
                return self._error(404, "Organization not found")
            self._send(200, [{"user": user, "fullname": user, "type": "user", "isFollowing": False}
                             for user in members])

        def _user_overview(self, name: str) -> None:
            if name not in set(hub.tokens.values()) or any(name in orgs for orgs in hub.orgs.values()):
                return self._error(404, "User not found")
            self._send(200, {"user": name, "fullname": name, "type": "user", "numModels": 0, "orgs": []})

        def _commit(self, repo_id: str, revision: str, body: bytes, pull: bool = False) -> None:
            repo = self._readable_by_user(repo_id) if pull else self._writable_repo(repo_id)
            if repo is None:
                return
            if revision not in repo.branches:
                return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            changes: dict[str, bytes | None] = {}
            message = ""
            for line in body.decode().splitlines():
                if not line.strip():
                    continue
                entry = json.loads(line)
                key, value = entry["key"], entry["value"]
                if key == "header":
                    message = value.get("summary", "")
                elif key == "file":
                    changes[value["path"]] = base64.b64decode(value["content"])
                elif key in ("deletedFile", "deletedFolder"):
                    changes[value["path"]] = None
                else:
                    return self._error(400, f"the Hub test double does not support '{key}' commit entries")
            pull_url = None
            if pull:
                num = len(repo.pulls) + 1
                branch = f"refs/pr/{num}"
                repo.branches[branch] = repo.branches[revision]
                repo.pulls.append({"num": num, "title": message, "author": self._user(), "status": "open"})
                revision, pull_url = branch, f"{hub.url}/{repo_id}/discussions/{num}"
            sha = hub.commit(repo_id, revision, changes, message, author=self._user())
            self._send(200, {"commitOid": sha, "commitUrl": f"{hub.url}/{repo_id}/commit/{sha}",
                             "pullRequestUrl": pull_url, "success": True})

        def _branch(self, repo_id: str, branch: str) -> None:
            repo = self._writable_repo(repo_id)
            if repo is None:
                return
            if branch in repo.branches:
                return self._error(409, f"Reference already exists: refs/heads/{branch}")
            repo.branches[branch] = repo.branches["main"]
            self._send(200, {})

        def _model_info(self, repo_id: str, revision: str) -> None:
            if self._quirk("model_info"):
                return
            resolved = self._revision_or_error(repo_id, revision)
            if resolved is None:
                return
            repo, sha = resolved
            self._send(200, hub.model_json(repo_id, sha, siblings=True))

        def _tree(self, repo_id: str, revision: str, prefix: str) -> None:
            resolved = self._revision_or_error(repo_id, revision)
            if resolved is None:
                return
            repo, sha = resolved
            prefix = prefix.rstrip("/") + "/" if prefix else ""
            entries = [{"type": "file", "path": p, "size": len(c), "oid": hashlib.sha1(c).hexdigest()}
                       for p, c in sorted(repo.commits[sha].items()) if p.startswith(prefix)]
            self._send(200, entries)  # flat listing: this double's repos hold no folders

        def _list(self, query: dict[str, list[str]]) -> None:
            """The Hub's model listing: tag filters, author, search; ``expand`` (huggingface_hub's
            ``list_models(expand=[...])``) picks the fields of each entry (``id`` always), ``cardData=true`` or
            ``full=true`` the old way; at most :data:`PAGE_SIZE` entries a page, the next page linked (``Link: <...>;
            rel="next"``, a ``cursor``) like the Hub's."""
            user = self._user()
            wanted = set(query.get("filter", []))
            author = (query.get("author") or [None])[0]
            search = (query.get("search") or [""])[0].lower()
            expand = query.get("expand", []) + query.get("expand[]", [])
            with_card = (query.get("cardData") or query.get("full") or ["false"])[0].lower() == "true" or \
                "cardData" in expand
            matching = [repo_id for repo_id in sorted(hub.repos) if hub.may_read(user, repo_id)
                        and (not author or hub.repos[repo_id].owner == author) and search in repo_id.lower()]
            start = int((query.get("cursor") or ["0"])[0])
            page_size = min(int((query.get("limit") or [PAGE_SIZE])[0]), PAGE_SIZE)
            items, position = [], start
            while position < len(matching) and len(items) < page_size:
                repo_id = matching[position]
                position += 1
                item = hub.model_json(repo_id, hub.repos[repo_id].branches["main"], siblings="siblings" in expand)
                if not wanted <= set(item["tags"]):
                    continue
                if not hub.card_data_in_listing:
                    item.pop("cardData", None)
                if expand:
                    item = {"id": item["id"], "_id": item["id"], **{k: item[k] for k in expand if k in item}}
                elif not with_card:
                    item.pop("cardData", None)
                    item.pop("model-index", None)
                items.append(item)
            headers = {}
            if position < len(matching):
                rest = [(k, v) for k, values in query.items() if k != "cursor" for v in values]
                headers["Link"] = f'<{hub.url}/api/models?{urlencode(rest + [("cursor", position)])}>; rel="next"'
            self._send(200, items, headers=headers)

        def _resolve(self, method: str, repo_id: str, revision: str, path: str) -> None:
            head = method == "HEAD"
            resolved = self._revision_or_error(repo_id, revision, head=head)
            if resolved is None:
                return
            repo, sha = resolved
            content = repo.commits[sha].get(path)
            if content is None:
                return self._error(404, "Entry not found", "EntryNotFound", head=head)
            etag = '"' + hashlib.sha256(content).hexdigest() + '"'
            headers = {"X-Repo-Commit": sha, "ETag": etag}
            if path in hub.encoded and not head:      # a planted answer: its body sent with that encoding
                encoding, content = hub.encoded[path]
                headers["Content-Encoding"] = encoding
            self._send(200, raw=content, head=head, headers=headers)

    return Handler


def point_client_at(hub: FakeHub, home: Path, monkeypatch, token: str | None) -> dict[str, str]:
    """Point huggingface_hub at ``hub``: the environment, and the constants it already read at import, with an empty
    cache under ``home`` and ``token`` (None: no token). Returns the environment variables set."""
    from huggingface_hub import constants

    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"),
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "0", **({"HF_TOKEN": token} if token else {})}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if token is None:
        monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return env
