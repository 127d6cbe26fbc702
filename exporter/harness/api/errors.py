"""API errors: an HTTP status, an OpenAI-style JSON body, and the outcome it counts as."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from aiohttp import web

from exporter.harness.sequence import Outcome


@dataclass(eq=False)  # an exception: compared and hashed by identity
class ApiError(Exception):
    """A request the API answers with an error.

    `outcome` is what it adds to inference_requests_total when the API refused it itself
    (rejected at the edge, shed); None when the engine already counted it (a timeout, a request
    the engine refused) or it is no request at all (an unknown path).
    """

    status: int
    message: str
    code: str
    param: str | None = None
    outcome: Outcome | None = Outcome.REJECTED
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def kind(self) -> str:
        """The body's `type`, as OpenAI's API names its error classes."""
        if self.status == 503:
            return "overloaded_error"
        if self.status == 504:
            return "timeout_error"
        if self.status >= 500:
            return "server_error"
        return "invalid_request_error"

    def body(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> web.Response:
        return web.Response(
            status=self.status,
            text=json.dumps(self.body()) + "\n",
            content_type="application/json",
            headers=self.headers,
        )
