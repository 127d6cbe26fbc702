"""The handlers: POST /v1/completions (JSON or server-sent events), GET /v1/models.

A completion goes through validation (400), the token budget (413/400), load shedding (503),
then the engine with the request deadline (504 when it passes). A streamed response waits for
its first token before it sends its headers, so a request that timed out or failed in the
queue still gets its status code; after that, an error is one last `data: {"error": ...}`
event. The listener runs with handler cancellation: a client that disconnects cancels its
handler, which aborts the request, and the engine frees its KV blocks at its next step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from exporter.harness.api import sse
from exporter.harness.api.admission import Admission, AdmissionLimits
from exporter.harness.api.body import read_body
from exporter.harness.api.errors import ApiError
from exporter.harness.api.validation import parse_completion_request
from exporter.harness.engine import (
    Engine,
    EngineError,
    EngineFailed,
    RequestCancelled,
    RequestRejected,
    RequestTimeout,
    StreamChunk,
    TokenStream,
)
from exporter.harness.sequence import Outcome
from exporter.logs import RateLimitedLog

OWNER = "gpu-inference-exporter"
_unexpected = RateLimitedLog(logging.getLogger(__name__), every=60.0)
#: Bodies up to this size are read and checked against the token budget (a 413 that says how
#: many tokens the prompt had); larger ones are refused unread.
MIN_BODY_BYTES = 2**20

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class CompletionsApi:
    """The API of one engine, with its admission control."""

    def __init__(
        self, engine: Engine, limits: AdmissionLimits | None = None, *, body_timeout: float = 10.0
    ) -> None:
        self.engine = engine
        self.body_timeout = body_timeout
        self.admission = Admission(limits or AdmissionLimits())
        self.created = int(time.time())

    @property
    def limits(self) -> AdmissionLimits:
        return self.admission.limits

    @property
    def max_body_bytes(self) -> int:
        return max(MIN_BODY_BYTES, 8 * self.limits.max_prompt_tokens)

    # --- POST /v1/completions ----------------------------------------------------------------

    async def completions(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._complete(request)
        except ApiError as error:
            if error.outcome is not None:
                self.engine.metrics.count_outcome(error.outcome)
            return error.response()
        except Exception as exc:  # a bug: still a JSON answer, counted, one short log line
            self.engine.metrics.count_outcome(Outcome.ERROR)
            _unexpected.log("POST /v1/completions failed: %s: %s", type(exc).__name__, exc)
            return ApiError(500, "internal error", "internal_error", outcome=None).response()

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        self._check_engine(Outcome.ERROR)
        body = await read_body(request, max_bytes=self.max_body_bytes, timeout=self.body_timeout)
        req = parse_completion_request(body)
        self._check_model(req.model)
        tokenizer = self.engine.tokenizer
        ids = tokenizer.encode(req.prompt) if isinstance(req.prompt, str) else req.prompt
        self.admission.check_budget(len(ids), req.max_tokens)
        self.admission.check_load(self.engine.ready, self.engine.stats)
        try:
            stream = self.engine.stream(
                ids,
                req.max_tokens,
                temperature=req.temperature,
                timeout=self.limits.request_timeout,
                ignore_eos=req.ignore_eos,
            )
        except RequestRejected as exc:  # counted by the engine
            raise ApiError(400, str(exc), "invalid_request", "prompt", None) from None
        except EngineFailed:
            self._check_engine(Outcome.ERROR)
            raise
        except EngineError as exc:  # stopping
            raise ApiError(
                503,
                f"the inference engine is not running: {exc}",
                "not_running",
                outcome=Outcome.SHED,
                headers={"Retry-After": str(self.admission.retry_after())},
            ) from None
        async with stream:
            first = await self._first_token(stream)
            if req.stream:
                return await self._send_events(request, stream, first)
            return await self._send_whole(stream, first, len(ids))

    async def _first_token(self, stream: TokenStream) -> StreamChunk:
        """Wait for the first token, counting the request as queued until then."""
        self.admission.queued += 1
        try:
            return await anext(stream)
        except (RequestTimeout, RequestCancelled, RequestRejected, EngineError) as exc:
            self._check_engine(None)
            raise _engine_error(exc) from None
        finally:
            self.admission.queued -= 1

    async def _send_whole(
        self, stream: TokenStream, first: StreamChunk, prompt_tokens: int
    ) -> web.Response:
        pieces = [first.text]
        try:
            async for chunk in stream:
                pieces.append(chunk.text)
        except (RequestTimeout, RequestCancelled, RequestRejected, EngineError) as exc:
            self._check_engine(None)
            raise _engine_error(exc) from None
        completion = stream.completion
        assert completion is not None
        generated = len(completion.token_ids)
        return web.json_response(
            {
                **self._header(stream),
                "choices": [
                    {
                        "index": 0,
                        "text": "".join(pieces),
                        "logprobs": None,
                        "finish_reason": completion.finish_reason,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": generated,
                    "total_tokens": prompt_tokens + generated,
                },
            }
        )

    async def _send_events(
        self, request: web.Request, stream: TokenStream, first: StreamChunk
    ) -> web.StreamResponse:
        response = sse.stream_response()
        header = self._header(stream)
        try:
            await response.prepare(request)
            await response.write(sse.event(_chunk(header, first)))
            try:
                async for chunk in stream:
                    await response.write(sse.event(_chunk(header, chunk)))
            except (RequestTimeout, RequestCancelled, RequestRejected, EngineError) as exc:
                await response.write(sse.event(_engine_error(exc).body()))
            await response.write(sse.DONE)
            await response.write_eof()
        except ConnectionResetError:  # the client went away: leaving `async with` aborts
            pass
        return response

    def _check_engine(self, outcome: Outcome | None) -> None:
        """A failed engine answers 500 `engine_failed`, without Retry-After: retrying cannot
        help until the exporter restarts. `outcome` is what the refusal counts as (None: the
        engine already counted the request)."""
        failure = self.engine.failure
        if failure is not None:
            raise ApiError(
                500,
                f"the inference engine failed ({failure}); it serves nothing until the "
                "exporter restarts, so retrying will not help",
                "engine_failed",
                outcome=outcome,
            )

    def _header(self, stream: TokenStream) -> dict[str, object]:
        return {
            "id": f"cmpl-{stream.request_id}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.model_name,
        }

    # --- GET /v1/models ----------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        config = self.engine.model_config
        return config.name if config is not None else self.engine.config.preset

    async def models(self, request: web.Request) -> web.Response:
        try:
            self._check_engine(None)
        except ApiError as error:
            return error.response()
        config = self.engine.model_config
        if config is None:
            error = ApiError(503, "the model is loading", "not_ready", outcome=None)
            error.headers["Retry-After"] = str(self.admission.retry_after())
            return error.response()
        model = {
            "id": config.name,
            "object": "model",
            "created": self.created,
            "owned_by": OWNER,
            "max_model_len": config.max_seq_len,
        }
        return web.json_response({"object": "list", "data": [model]})

    def _check_model(self, model: str | None) -> None:
        config = self.engine.model_config
        if model is not None and config is not None and model != config.name:
            raise ApiError(
                404,
                f"model {model!r} does not exist; this server serves {config.name!r}",
                "model_not_found",
                "model",
            )


def _chunk(header: dict[str, object], chunk: StreamChunk) -> dict[str, object]:
    return {
        **header,
        "choices": [
            {"index": 0, "text": chunk.text, "logprobs": None, "finish_reason": chunk.finish_reason}
        ],
    }


def _engine_error(exc: Exception) -> ApiError:
    """The API error for a request the engine ended (the engine counted its outcome)."""
    if isinstance(exc, RequestTimeout):
        return ApiError(504, str(exc), "timeout", outcome=None)
    if isinstance(exc, RequestRejected):
        return ApiError(400, str(exc), "invalid_request", "prompt", None)
    if isinstance(exc, RequestCancelled):
        return ApiError(503, f"the request was cancelled: {exc}", "cancelled", outcome=None)
    return ApiError(500, str(exc), "engine_error", outcome=None)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown paths and methods answer in the API's JSON error shape too."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return ApiError(
            exc.status,
            exc.reason,
            {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error"),
            outcome=None,
            headers={k: v for k, v in exc.headers.items() if k == "Allow"},
        ).response()


API_KEY = web.AppKey("completions_api", CompletionsApi)


def build_api_app(
    engine: Engine, limits: AdmissionLimits | None = None, *, body_timeout: float = 10.0
) -> web.Application:
    """The harness's web application: /v1/completions and /v1/models."""
    api = CompletionsApi(engine, limits, body_timeout=body_timeout)
    app = web.Application(client_max_size=api.max_body_bytes, middlewares=[json_errors])
    app[API_KEY] = api
    app.router.add_post("/v1/completions", api.completions)
    app.router.add_get("/v1/models", api.models)
    return app
