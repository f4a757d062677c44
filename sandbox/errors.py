"""The one exception type the sandbox uses to answer a Bot API call with an error.

Telegram's error responses have a fixed shape (`ok`, `error_code`, `description`, and for
flood control `parameters.retry_after`); keeping it in one place makes every rejection look
exactly like Telegram's, which is what PTB parses into BadRequest/Forbidden/RetryAfter.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A Bot API error: HTTP status == `error_code`, `description` as Telegram words it."""

    def __init__(self, status: int, description: str, *, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    def to_json(self) -> dict[str, Any]:
        """The response body Telegram would send for this error."""
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def bad_request(detail: str) -> ApiError:
    """A 400 with Telegram's "Bad Request: " prefix."""
    return ApiError(400, f"Bad Request: {detail}")


def too_many_requests(retry_after: int) -> ApiError:
    """A 429 as Telegram's flood control sends it."""
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)
