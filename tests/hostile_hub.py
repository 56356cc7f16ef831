"""A misbehaving Hub on loopback, for the hostile-input tests: slow, huge, redirecting, looping, forbidding.

``HostileHub(listing=..., cards=...)`` serves ``GET /api/models`` (the dd-hub listing) and
``GET /{org}/{name}/resolve/{rev}/{file}``; ``Elsewhere`` is a second server on another loopback address that
records the headers it is sent (so a test can tell whether a token left the Hub's host). Both stop by themselves
when the test ends; request loops are bounded by the client under test.
"""
from __future__ import annotations

import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


GZIP_BOMB = gzip.compress(b"\0" * (20 << 20), compresslevel=9)   # 20 KB that decode to 20 MiB
GZIP_TWICE = gzip.compress(GZIP_BOMB)


class _Server:
    def __init__(self, host: str, handler: type) -> None:
        self.server = ThreadingHTTPServer((host, 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Elsewhere(_Server):
    """Another host: answers every GET with an empty JSON list and remembers the headers it got."""

    def __init__(self) -> None:
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                seen.append(dict(self.headers))
                body = b"[]"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__("127.0.0.2", Handler)


class HostileHub(_Server):
    """``listing``: 'normal', 'trickle', 'huge', 'loop' or 'elsewhere'; ``cards``: repo id -> README text, or
    'forbidden' (403), 'redirect' (to ``elsewhere``), 'huge' (a 2 GB body announced and streamed), 'gzip-bomb' (20 KB
    of gzip that decode to 20 MiB), 'gzip-gzip' (the same, gzipped twice, ``Content-Encoding: gzip, gzip``);
    a card's figure named ``huge.png`` is 2 GB too."""

    def __init__(self, listing: str = "normal", cards: dict[str, str] | None = None,
                 elsewhere: Elsewhere | None = None) -> None:
        hub = self
        self.cards, self.listing, self.elsewhere = cards or {}, listing, elsewhere
        self.requests: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def send(self, status: int, body: bytes, headers: dict | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def stream_forever(self, length: int, chunk: bytes, pause: float) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                deadline = time.monotonic() + 60  # the server stops by itself
                try:
                    while time.monotonic() < deadline:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        time.sleep(pause)
                except OSError:
                    pass

            def do_GET(self):
                url = urlsplit(self.path)
                hub.requests.append(url.path)
                parts = [unquote(p) for p in url.path.strip("/").split("/")]
                if parts == ["api", "models"]:
                    return self.listing(url)
                if len(parts) >= 5 and parts[2] == "resolve":
                    return self.file("/".join(parts[:2]), "/".join(parts[4:]))
                if len(parts) >= 5 and parts[4] == "discussions":
                    return self.send(200, b'{"discussions": []}')
                self.send(404, b"{}")

            def listing(self, url):
                items = json.dumps([{"id": repo_id} for repo_id in sorted(hub.cards)]).encode()
                if hub.listing == "trickle":
                    return self.stream_forever(10_000, b"[", 0.3)
                if hub.listing == "huge":
                    return self.stream_forever(2 << 30, b" " * 65536, 0.0)
                if hub.listing == "loop":
                    return self.send(200, items, {"Link": f'<{hub.url}/api/models?page=same>; rel="next"'})
                if hub.listing == "elsewhere":
                    return self.send(200, items, {"Link": f'<{hub.elsewhere.url}/api/models>; rel="next"'})
                self.send(200, items)

            def file(self, repo_id, filename):
                card = hub.cards.get(repo_id)
                if card is not None and filename == "huge.png":     # any card's figure of that name: 2 GB
                    return self.stream_forever(2 << 30, b"\x89PNG\r\n\x1a\n" * 8192, 0.0)
                if card is None or filename != "README.md":
                    return self.send(404, b"{}", {"X-Error-Code": "EntryNotFound"})
                if card == "forbidden":
                    return self.send(403, b'{"error": "forbidden"}')
                if card == "redirect":
                    return self.send(302, b"", {"Location": f"{hub.elsewhere.url}/card"})
                if card == "huge":
                    return self.stream_forever(2 << 30, b"x" * 65536, 0.0)
                if card in ("gzip-bomb", "gzip-gzip"):
                    twice = card == "gzip-gzip"
                    return self.send(200, GZIP_TWICE if twice else GZIP_BOMB,
                                     {"Content-Encoding": "gzip, gzip" if twice else "gzip"})
                self.send(200, card.encode(), {"X-Repo-Commit": "a" * 40})

        super().__init__("127.0.0.1", Handler)
