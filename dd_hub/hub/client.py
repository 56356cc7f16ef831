"""Talking to the Hugging Face Hub: the client (with timeouts), the token, repo ids, and one-line errors.

The token comes from where huggingface_hub looks (``HF_TOKEN``, the ``hf auth login`` cache); dd-hub never
prints or stores it.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

from ..errors import DDHubError, first_line

#: seconds to wait for the Hub to answer one request (``DD_HUB_HUB_TIMEOUT`` overrides); huggingface_hub's own
#: client waits forever on an endpoint that accepts the connection and never answers
HUB_TIMEOUT_S = float(os.environ.get("DD_HUB_HUB_TIMEOUT", "30"))


def hub_api(token: str | None = None):
    """An ``HfApi`` whose requests time out after :data:`HUB_TIMEOUT_S` seconds."""
    from huggingface_hub import HfApi, get_session

    session = get_session()
    session.timeout = type(session.timeout)(HUB_TIMEOUT_S)
    return HfApi(token=token, library_name="dd-hub")


def resolve_token(token: str | None = None) -> str | None:
    """The token huggingface_hub would use: the argument, ``HF_TOKEN`` or the login cache."""
    from huggingface_hub import get_token

    return token or get_token()


def validate_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is a valid ``ORG/NAME``, else a one-line :class:`DDHubError`."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id as hub_validate

    try:
        hub_validate(repo_id)
    except HFValidationError as exc:
        raise DDHubError(f"invalid repo name '{repo_id}': {first_line(exc)}") from None
    if repo_id.count("/") != 1:
        raise DDHubError(f"invalid repo name '{repo_id}': use ORG/NAME")
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
        raise DDHubError(f"{action}: the Hub answered {status}: {first_line(exc)}") from None
    except OSError as exc:  # connection refused, DNS, timeouts (httpx's errors are OSErrors underneath or below)
        raise DDHubError(f"{action}: cannot reach the Hub ({type(exc).__name__}); check the network or "
                         "HF_ENDPOINT") from None
    except Exception as exc:
        if type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore"):
            timeout = f", no answer within {HUB_TIMEOUT_S:g} s" if "Timeout" in type(exc).__name__ else ""
            raise DDHubError(f"{action}: cannot reach the Hub ({type(exc).__name__}{timeout}); check the network "
                             "or HF_ENDPOINT") from None
        raise
