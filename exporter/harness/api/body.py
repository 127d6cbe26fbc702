"""Reading a request body within bounds: time, size and encoding, each refusal an ApiError.

The listener does not decompress (aiohttp's `auto_decompress` is off on the API): an encoding
it does not know would otherwise reach the JSON parser as is, and a broken gzip stream would
escape as a plain-text 500. Here `identity`, `gzip` and `deflate` are read, the decompressed
size bounded like the raw one (a small zip bomb is a 413, not a full heap); anything else is a
415 saying what to send.
"""

from __future__ import annotations

import asyncio
import zlib

from aiohttp import web

from exporter.harness.api.errors import ApiError

ENCODINGS = ("identity", "gzip", "x-gzip", "deflate")
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, f"the request body is over {max_bytes} bytes", "body_too_large")


async def read_body(request: web.Request, *, max_bytes: int, timeout: float) -> bytes:
    """The body, decompressed; ApiError 408, 413, 415 or 400 (counted as rejected)."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower() or "identity"
    if encoding not in ENCODINGS:
        raise ApiError(
            415,
            f"Content-Encoding {encoding[:40]!r} is not supported: send the body as identity, "
            "gzip or deflate",
            "unsupported_content_encoding",
        )
    try:
        async with asyncio.timeout(timeout):
            raw = await request.read()
    except TimeoutError:
        error = ApiError(
            408, f"the request body did not arrive within {timeout:g}s", "body_timeout"
        )
        error.headers["Connection"] = "close"
        raise error from None
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(max_bytes) from None
    if encoding == "identity":
        return raw
    return _decompress(raw, encoding, max_bytes)


def _decompress(raw: bytes, encoding: str, max_bytes: int) -> bytes:
    attempts = [_WBITS[encoding]]
    if encoding == "deflate":
        attempts.append(-zlib.MAX_WBITS)  # raw deflate, as some clients send it
    problem = ""
    for wbits in attempts:
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(raw, max_bytes + 1)
        except zlib.error as exc:
            problem = str(exc)
            continue
        if len(out) > max_bytes:
            raise _too_large(max_bytes)
        if not inflater.eof:
            problem = "the compressed stream is truncated"
            continue
        return out
    raise ApiError(
        400, f"the request body is not valid {encoding} data ({problem})", "invalid_encoding"
    )
