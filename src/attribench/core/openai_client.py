"""The OpenAI client, its key and its retry loop: shared by the creative-prompt stage and the DALL-E backend.

The key is read from the environment only and is never logged or written anywhere; `base_url` points the
real client at any OpenAI-compatible server.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)


class NotConfigured(RuntimeError):
    """Something the OpenAI route needs (an API key, a budget) is missing; the message says what."""


class OpenAIRequestFailed(RuntimeError):
    """A request that failed for good; `status` and `code` (e.g. content_policy_violation) when the API said why."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.code = status, code


def make_client(
    api_key_env: str = "OPENAI_API_KEY", base_url: str | None = None, timeout: float = 120.0, what: str = "OpenAI API"
) -> openai.OpenAI:
    import openai  # here, not at module level: every backend import (and the Snakemake DAG) would pay ~0.7 s

    key = os.environ.get(api_key_env, "").strip()
    if not key:
        raise NotConfigured(
            f"{what}: environment variable {api_key_env} is not set (export it; the key is read "
            "from the environment only)"
        )
    # max_retries=0: our own retry loop decides, logs and counts retries (and tests can drive it).
    return openai.OpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=timeout)


def with_retries(
    call: Callable[[], Any],
    what: str,
    max_retries: int = 5,
    base_delay: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """`call()`, retrying 429, 5xx and connection errors with exponential backoff; others raise at once."""
    import openai

    for attempt in range(max_retries + 1):
        try:
            return call()
        except openai.APIStatusError as e:
            if e.status_code != 429 and e.status_code < 500:  # the request itself is wrong: retrying cannot help
                raise OpenAIRequestFailed(
                    f"{what}: HTTP {e.status_code} ({e.code or 'no code'}): {e.message}", e.status_code, e.code
                ) from e
            err, reason = e, f"HTTP {e.status_code}"
            retry_after = e.response.headers.get("retry-after", "")
        except openai.APIConnectionError as e:
            err, reason, retry_after = e, type(e).__name__, ""
        if attempt == max_retries:
            raise OpenAIRequestFailed(
                f"{what}: gave up after {attempt + 1} attempts; last error {reason}: {getattr(err, 'message', err)}",
                getattr(err, "status_code", None),
            ) from err
        delay = base_delay * 2**attempt
        if retry_after.replace(".", "", 1).isdigit():  # the server's own hint, capped
            delay = max(delay, min(float(retry_after), 60.0))
        log.warning("%s: %s; retry %d/%d in %.2fs", what, reason, attempt + 1, max_retries, delay)
        sleep(delay)
