"""Talking to the Hugging Face Hub with budgets: the token, repo ids, one-line errors, and limits on time and size.

The Hub endpoint (``HF_ENDPOINT``) may be slow, huge or hostile. Every call dd-hub makes is bounded:

- **time**: each request has a total deadline (:data:`HUB_TIMEOUT_S`, connection to last byte, not per read, so a
  server that trickles a byte every few seconds is cut off), and all the requests of one command share a deadline
  (:data:`COMMAND_DEADLINE_S`); calls through huggingface_hub (downloads of weights, commits) are bounded the same
  way;
- **size**: every download has a byte cap, checked while it streams, on the decoded bytes (one layer of gzip at
  most); what huggingface_hub receives for dd-hub is bounded by the same decoder (:func:`bound_huggingface_hub`:
  a response hook added to the client huggingface_hub shares, which otherwise stays as the user configured it);
- **retries**: at most :data:`RETRIES` more attempts, on connection errors, 429 and 5xx only;
- **hosts**: the token is sent only to the endpoint's origin (its scheme and host: never to the same host over
  plain http when the endpoint is https); redirects (at most :data:`MAX_REDIRECTS`, e.g. a file download sent to
  the Hub's CDN) are followed without it elsewhere; pagination (``Link: next``) is followed only on that origin,
  and a page that links to one already read ends the listing.

The token comes from where huggingface_hub looks (``HF_TOKEN``, the ``hf auth login`` cache); dd-hub never
prints or stores it.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar
from urllib.parse import urljoin, urlsplit

from ..errors import DDHubError, first_line

#: seconds one request may take, start to end (``DD_HUB_HUB_TIMEOUT`` overrides)
HUB_TIMEOUT_S = float(os.environ.get("DD_HUB_HUB_TIMEOUT", "30"))
#: seconds all the Hub requests of one command may take together (``DD_HUB_HUB_DEADLINE`` overrides)
COMMAND_DEADLINE_S = float(os.environ.get("DD_HUB_HUB_DEADLINE", "600"))
RETRIES = 2
MAX_REDIRECTS = 5
MAX_PAGES = 100
MAX_JSON_BYTES = 32 << 20
#: the most decoded bytes one huggingface_hub response may carry, the largest weight file dd-hub downloads
#: (``DD_HUB_MAX_WEIGHTS_BYTES`` overrides)
MAX_WEIGHTS_BYTES = int(os.environ.get("DD_HUB_MAX_WEIGHTS_BYTES", str(8 << 30)))
CHUNK_BYTES = 64 << 10
T = TypeVar("T")


class HubTooLarge(DDHubError):
    """A download went over its byte cap."""


class HubUnavailable(DDHubError):
    """The Hub could not be reached, or did not answer within the budget."""


@dataclass
class HubResponse:
    status: int
    headers: dict[str, str]
    content: bytes
    url: str

    def json(self) -> Any:
        import json

        try:
            return json.loads(self.content)
        except (ValueError, RecursionError) as exc:
            raise DDHubError(f"the Hub answered {self.url} with something that is not JSON ({first_line(exc)})") from None

    def next_page(self) -> str | None:
        """The ``Link: <url>; rel="next"`` target, if any."""
        for part in self.headers.get("link", "").split(","):
            url, _, params = part.partition(";")
            if 'rel="next"' in params.replace(" ", ""):
                return url.strip().strip("<>")
        return None


class Budget:
    """The time a command may still spend on the Hub."""

    def __init__(self, seconds: float = COMMAND_DEADLINE_S) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def for_request(self, what: str) -> float:
        """Seconds the next request may take: its own deadline, or less when the command's ends sooner."""
        left = self.remaining()
        if left <= 0:
            raise HubUnavailable(f"{what}: the command's {self.seconds:g} s for the Hub are spent; try again, or set "
                                 "DD_HUB_HUB_DEADLINE higher")
        return min(HUB_TIMEOUT_S, left)


def endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def within(seconds: float, what: str, call: Callable[[], T]) -> T:
    """``call()`` in a daemon thread, waited for at most ``seconds``: a one-line error, never a hang, when it
    takes longer (the thread is abandoned; it ends with the process)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True, name="dd-hub-hub-call")
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise HubUnavailable(f"{what}: no complete answer from the Hub within {seconds:g} s; check the network or "
                             "HF_ENDPOINT (DD_HUB_HUB_TIMEOUT and DD_HUB_HUB_DEADLINE set the limits)")
    if "error" in box:
        raise box["error"]
    return box["value"]


class HubReader:
    """dd-hub's own GET requests to the Hub endpoint: listings, cards, figures, records; see the module docstring
    for the limits. One reader serves one command (its :class:`Budget`)."""

    def __init__(self, token: str | None = None, budget: Budget | None = None) -> None:
        self.token, self.budget = token, budget or Budget()
        self.base = endpoint()
        self.origin = _origin(self.base)
        self.memo: dict = {}     # answers a command reuses (e.g. an organisation's members)

    def get(self, path: str, *, params: dict | None = None, max_bytes: int = MAX_JSON_BYTES,
            what: str = "cannot read from the Hub") -> HubResponse:
        """One GET of ``path`` (relative to the endpoint, or an absolute URL on its host), retried on transient
        failures; 4xx answers are returned, not raised."""
        url = path if path.startswith(("http://", "https://")) else f"{self.base}/{path.lstrip('/')}"
        if _origin(url) != self.origin:
            raise DDHubError(f"{what}: refusing to request {'://'.join(_origin(url))}, which is not the Hub endpoint")
        self._check_online(what)
        for attempt in range(RETRIES + 1):
            seconds = self.budget.for_request(what)
            try:
                response = within(seconds, what, lambda: self._fetch(url, params, max_bytes, seconds))
            except HubTooLarge as exc:
                raise HubTooLarge(f"{what}: {exc}") from None
            except (HubUnavailable, OSError) as exc:
                if attempt == RETRIES:
                    raise HubUnavailable(f"{what}: {first_line(exc)}") from None
            except Exception as exc:
                if type(exc).__module__.split(".")[0] not in ("httpx", "httpx2", "httpcore", "h11"):
                    raise
                if attempt == RETRIES:
                    raise HubUnavailable(f"{what}: cannot reach the Hub ({type(exc).__name__}); check the network "
                                         "or HF_ENDPOINT") from None
            else:
                if response.status != 429 and response.status < 500 or attempt == RETRIES:
                    return response
            time.sleep(min(2.0 ** attempt, max(0.0, self.budget.remaining())))
        raise AssertionError("unreachable")

    def json(self, path: str, *, params: dict | None = None, what: str = "cannot read from the Hub") -> Any:
        """The JSON of a 200 answer; other statuses are one-line errors."""
        response = self.get(path, params=params, what=what)
        raise_for_status(response, what)
        return response.json()

    def file(self, repo_id: str, filename: str, *, max_bytes: int, revision: str = "main",
             what: str | None = None) -> bytes | None:
        """A file of a model repo (None when the repo or file does not exist), at most ``max_bytes`` long."""
        return self.download(repo_id, filename, max_bytes=max_bytes, revision=revision, what=what)[0]

    def download(self, repo_id: str, filename: str, *, max_bytes: int, revision: str = "main",
                 what: str | None = None) -> tuple[bytes | None, str | None]:
        """``(content, commit)`` of a file of a model repo: the commit is the repo revision it was read at (the
        Hub's ``X-Repo-Commit``); ``(None, None)`` when the repo or file does not exist."""
        from urllib.parse import quote

        what = what or f"cannot download {filename} of {repo_id}"
        response = self.get(f"{quote(repo_id)}/resolve/{quote(revision, safe='')}/{quote(filename)}",
                            max_bytes=max_bytes, what=what)
        if response.status == 404:
            return None, None
        raise_for_status(response, what, repo_id)
        commit = response.headers.get("x-repo-commit")
        return response.content, commit if commit and commit.isalnum() and len(commit) <= 64 else None

    def pages(self, path: str, *, params: dict, limit: int, what: str) -> Iterator[Any]:
        """The items of a paginated listing, at most ``limit``, following ``Link: next`` on the endpoint's host
        only and never to a page already read."""
        url: str | None = path
        seen: set[str] = set()
        count = 0
        for _ in range(MAX_PAGES):
            response = self.get(url, params=params, what=what)
            raise_for_status(response, what)
            items = response.json()
            if not isinstance(items, list):
                raise DDHubError(f"{what}: the Hub's listing is not a list")
            for item in items:
                yield item
                count += 1
                if count >= limit:
                    return
            seen.add(response.url)
            url, params = response.next_page(), None
            if url is None:
                return
            url = urljoin(response.url, url)
            if _origin(url) != self.origin or url in seen:
                return  # another origin (never sent the token), or a loop
        return

    def _check_online(self, what: str) -> None:
        from huggingface_hub import constants

        if constants.is_offline_mode():
            raise DDHubError(f"{what}: huggingface_hub is in offline mode (HF_HUB_OFFLINE=1); unset it to reach the "
                             "Hub, or use local files")

    def _fetch(self, url: str, params: dict | None, max_bytes: int, seconds: float) -> HubResponse:
        import httpx2

        deadline = time.monotonic() + seconds
        with httpx2.Client(follow_redirects=False, timeout=httpx2.Timeout(seconds), trust_env=True) as client:
            for _ in range(MAX_REDIRECTS + 1):
                headers = {"user-agent": "dd-hub", "accept-encoding": "gzip"}
                if self.token and _origin(url) == self.origin:
                    headers["authorization"] = f"Bearer {self.token}"
                with client.stream("GET", url, params=params, headers=headers) as response:
                    if response.is_redirect:
                        url, params = urljoin(url, response.headers.get("location", "")), None
                        continue
                    length = response.headers.get("content-length")
                    if length and length.isdigit() and int(length) > max_bytes:
                        raise HubTooLarge(f"{url} is {int(length):,} bytes, over the {max_bytes:,} bytes allowed")
                    decoded = _Decoded(url, response.headers.get("content-encoding", ""), max_bytes)
                    chunks: list[bytes] = []
                    for chunk in response.iter_raw(CHUNK_BYTES):
                        chunks.extend(decoded.decode(chunk))
                        if time.monotonic() > deadline:
                            raise HubUnavailable(f"{url} did not finish within {seconds:g} s")
                    chunks.extend(decoded.finish())
                    return HubResponse(response.status_code, {k.lower(): v for k, v in response.headers.items()},
                                       b"".join(chunks), str(response.url))
        raise DDHubError(f"{url}: more than {MAX_REDIRECTS} redirects")


class _Decoded:
    """A body as it streams in, decoded here rather than by the HTTP client so that the byte cap holds for the
    decoded bytes whatever the server says (one layer of gzip at most: ``gzip, gzip`` of 1.8 KB can decode to
    4 GiB), and is checked before more is decoded; at most :data:`CHUNK_BYTES` are decoded at a time."""

    def __init__(self, url: str, encoding: str, max_bytes: int) -> None:
        import zlib

        layers = [e.strip().lower() for e in encoding.split(",") if e.strip().lower() not in ("", "identity")]
        if len(layers) > 1 or (layers and layers[0] not in ("gzip", "x-gzip")):
            raise HubTooLarge(f"{url} is sent with the content encoding {encoding[:60]!r}, which dd-hub does not "
                              "decode (identity or one layer of gzip)")
        self.url, self.max_bytes, self.total = url, max_bytes, 0
        self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS) if layers else None

    def _count(self, data: bytes) -> bytes:
        self.total += len(data)
        if self.total > self.max_bytes:
            raise HubTooLarge(f"{self.url} is over the {self.max_bytes:,} bytes allowed")
        return data

    def decode(self, chunk: bytes) -> Iterator[bytes]:
        """The decoded bytes of the next ``chunk`` of the body, in pieces."""
        import zlib

        if self.decoder is None:
            yield self._count(chunk)
            return
        try:
            data = self._count(self.decoder.decompress(chunk, CHUNK_BYTES))
            while True:
                yield data
                if not self.decoder.unconsumed_tail:
                    return
                data = self._count(self.decoder.decompress(self.decoder.unconsumed_tail, CHUNK_BYTES))
        except zlib.error as exc:
            raise HubUnavailable(f"{self.url} is not valid gzip ({exc})") from None

    def finish(self) -> Iterator[bytes]:
        if self.decoder is not None:
            yield self._count(self.decoder.flush())


def bound_huggingface_hub() -> None:
    """Make every response huggingface_hub receives (its shared client: downloads, ``HfApi`` calls) go through
    :class:`_Decoded` under :data:`MAX_WEIGHTS_BYTES`, still streamed; idempotent, called before each
    huggingface_hub call dd-hub makes (a session huggingface_hub recreates gets the hook again)."""
    from huggingface_hub import get_session

    session = get_session()
    hooks = session.event_hooks
    if _bound_response not in hooks.get("response", []):
        session.event_hooks = {**hooks, "response": [*hooks.get("response", []), _bound_response]}


def _bound_response(response) -> None:
    """An httpx response hook: the body is decoded by :class:`_Decoded` (which refuses ``gzip, gzip``), and the
    Content-Encoding header is dropped so that httpx decodes nothing more."""
    import httpx2

    class BoundedStream(httpx2.SyncByteStream):
        def __init__(self, raw: httpx2.SyncByteStream, decoded: _Decoded) -> None:
            self.raw, self.decoded = raw, decoded

        def __iter__(self) -> Iterator[bytes]:
            for chunk in self.raw:
                yield from self.decoded.decode(chunk)
            yield from self.decoded.finish()

        def close(self) -> None:
            self.raw.close()

    decoded = _Decoded(str(response.url), response.headers.get("content-encoding", ""), MAX_WEIGHTS_BYTES)
    if decoded.decoder is not None:     # the decoded length is not the one announced
        del response.headers["content-encoding"]
        response.headers.pop("content-length", None)
    response.stream = BoundedStream(response.stream, decoded)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def raise_for_status(response: HubResponse, action: str, repo_id: str | None = None) -> None:
    """A one-line error for an answer that is not a success (the server's words cut to one short line)."""
    status = response.status
    if status < 400:
        return
    where = f" {repo_id}" if repo_id else ""
    if status == 401:
        raise DDHubError(f"{action}: the Hub rejected the token (401); log in again with `hf auth login` or set "
                         "HF_TOKEN to a valid token")
    if status == 403:
        raise DDHubError(f"{action}: access denied{' to' + where if where else ''} (403)")
    if status == 404:
        raise DDHubError(f"{action}: not found on the Hub (404)")
    raise DDHubError(f"{action}: the Hub answered {status}")


def hub_api(token: str | None = None):
    """An ``HfApi`` for dd-hub's calls; bound each call with :func:`hub_call`."""
    from huggingface_hub import HfApi

    return HfApi(token=token, library_name="dd-hub")


def hub_call(action: str, call: Callable[[], T], repo_id: str | None = None, budget: Budget | None = None, *,
             transfer: bool = False) -> T:
    """A huggingface_hub call bounded like one request (:data:`HUB_TIMEOUT_S`), or, for a ``transfer`` of files
    (a commit, a download of weights), by what is left of the command's budget; its errors as one line
    (:func:`hub_errors`)."""
    budget = budget or Budget()
    seconds = max(budget.remaining(), 0.0) if transfer else budget.for_request(action)
    with hub_errors(action, repo_id):
        bound_huggingface_hub()
        try:
            return within(seconds, action, call)
        except HubTooLarge as exc:      # raised inside huggingface_hub by the bound: say what was being done
            raise HubTooLarge(f"{action}: {exc}") from None


def resolve_token(token: str | None = None) -> str | None:
    """The token huggingface_hub would use: the argument, ``HF_TOKEN`` or the login cache."""
    from huggingface_hub import get_token

    return token or get_token()


def validate_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is a valid ``ORG/NAME``, else a one-line :class:`DDHubError`."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id as hub_validate

    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or any(part in ("", ".", "..")
                                                                        for part in repo_id.split("/")):
        raise DDHubError(f"invalid repo name {str(repo_id)[:100]!r}: use ORG/NAME")
    try:
        hub_validate(repo_id)
    except HFValidationError as exc:
        raise DDHubError(f"invalid repo name {repo_id[:100]!r}: {first_line(exc)}") from None
    return repo_id


@contextlib.contextmanager
def hub_errors(action: str, repo_id: str | None = None) -> Iterator[None]:
    """Turns huggingface_hub and network exceptions into one-line :class:`DDHubError`s (never echoing a token)."""
    from huggingface_hub.errors import (HfHubHTTPError, HFValidationError, LocalEntryNotFoundError,
                                        OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError)

    where = f" {repo_id}" if repo_id else ""
    try:
        yield
    except HFValidationError as exc:
        raise DDHubError(f"invalid repo name '{repo_id}': {first_line(exc)}") from None
    except RepositoryNotFoundError:
        raise DDHubError(f"{action}: no repo{where} on the Hub, or your token cannot see it (log in with "
                         "`hf auth login` or set HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise DDHubError(f"{action}: no such revision") from None
    except OfflineModeIsEnabled:
        raise DDHubError(f"{action}: huggingface_hub is in offline mode (HF_HUB_OFFLINE=1); unset it to reach the "
                         "Hub, or use local files") from None
    except LocalEntryNotFoundError:
        raise DDHubError(f"{action}: not in the local Hub cache and the Hub cannot be reached (offline mode or no "
                         "network); download it once while online") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 401:
            raise DDHubError(f"{action}: the Hub rejected the token (401); log in again with `hf auth login` or "
                             "set HF_TOKEN to a valid token") from None
        if status == 403:
            target = f"for{where}" if repo_id else "for this repo"
            raise DDHubError(f"{action}: your token has no write permission {target} (403); use a write token "
                             "or a namespace you own (--repo-id YOUR_NAME/NAME)") from None
        raise DDHubError(f"{action}: the Hub answered {status}") from None
    except OSError as exc:  # connection refused, DNS, timeouts (httpx's errors are OSErrors underneath or below)
        raise DDHubError(f"{action}: cannot reach the Hub ({type(exc).__name__}); check the network or "
                         "HF_ENDPOINT") from None
    except (ValueError, KeyError, TypeError, RecursionError) as exc:  # an answer that is not what the Hub sends
        raise DDHubError(f"{action}: the Hub's answer is malformed ({type(exc).__name__}: "
                         f"{first_line(exc)[:100]}); check HF_ENDPOINT") from None
    except Exception as exc:
        if type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "h11"):
            raise DDHubError(f"{action}: cannot reach the Hub ({type(exc).__name__}); check the network or "
                             "HF_ENDPOINT") from None
        raise
