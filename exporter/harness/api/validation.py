"""The body of POST /v1/completions, parsed and type-checked: 400 saying what was wrong.

The OpenAI subset: `prompt` (a string, or a list of token ids), `max_tokens` (default 16),
`temperature` (0-2, default 1; 0 is greedy), `stream`, `model`; and vLLM's `ignore_eos`.
Fields that would change the shape of the answer and are not supported (`n`, `best_of`,
`echo`, `logprobs`, `suffix`, `stop`) are refused rather than silently ignored; any other
field (`top_p`, `user`, ...) is ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from exporter.harness.api.errors import ApiError

DEFAULT_MAX_TOKENS = 16
DEFAULT_TEMPERATURE = 1.0
MAX_TEMPERATURE = 2.0

#: Unsupported fields and the value each may still take (what OpenAI's default means).
_UNSUPPORTED = {"n": 1, "best_of": 1, "echo": False, "logprobs": None, "suffix": None, "stop": None}


@dataclass(frozen=True)
class CompletionRequest:
    prompt: str | list[int]
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = DEFAULT_TEMPERATURE
    stream: bool = False
    ignore_eos: bool = False
    model: str | None = None


def _bad(message: str, param: str | None, code: str = "invalid_type") -> ApiError:
    return ApiError(400, message, code, param)


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__.replace("dict", "object")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _unicode(value: str, param: str) -> str:
    """The string, or 400 when it holds a lone surrogate (valid JSON, not valid Unicode)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start]
        raise _bad(
            f"{param} is not valid Unicode: a lone surrogate \\u{ord(bad):04x} at character "
            f"{exc.start}",
            param,
            "invalid_value",
        ) from None
    return value


def _prompt(value: object) -> str | list[int]:
    if isinstance(value, str):
        return _unicode(value, "prompt")
    if isinstance(value, list):
        if len(value) == 1 and isinstance(value[0], str):
            return _unicode(value[0], "prompt")
        if value and all(_is_int(v) for v in value):
            return list(value)
        if value and all(isinstance(v, str) for v in value):
            raise _bad("prompt: one prompt per request (a list of strings is a batch)", "prompt")
        if not value:
            raise _bad("prompt must not be empty", "prompt", "invalid_value")
        raise _bad("prompt must be a string or a list of integer token ids", "prompt")
    raise _bad(f"prompt must be a string or a list of token ids, got {_type_name(value)}", "prompt")


def parse_completion_request(body: bytes) -> CompletionRequest:
    """Parse and check a request body; raise ApiError (400) naming the problem."""
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise _bad(f"request body is not UTF-8: {exc}", None, "invalid_json") from None
    except RecursionError:
        raise _bad(
            "request body is nested too deeply to be a request", None, "invalid_json"
        ) from None
    except ValueError as exc:  # JSONDecodeError, NaN, an integer of thousands of digits
        reason = str(exc).split(";")[0]
        raise _bad(f"request body is not valid JSON: {reason}", None, "invalid_json") from None
    if not isinstance(data, dict):
        raise _bad(f"request body must be a JSON object, got {_type_name(data)}", None)
    if "prompt" not in data:
        raise _bad("prompt is required", "prompt", "missing_field")
    prompt = _prompt(data["prompt"])

    max_tokens = data.get("max_tokens")
    if max_tokens is None:
        max_tokens = DEFAULT_MAX_TOKENS
    elif not _is_int(max_tokens):
        raise _bad(f"max_tokens must be an integer, got {json.dumps(max_tokens)}", "max_tokens")
    elif max_tokens < 1:
        raise _bad(
            f"max_tokens must be at least 1, got {max_tokens}", "max_tokens", "invalid_value"
        )

    temperature = data.get("temperature")
    if temperature is None:
        temperature = DEFAULT_TEMPERATURE
    elif isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise _bad(f"temperature must be a number, got {json.dumps(temperature)}", "temperature")
    elif not 0 <= temperature <= MAX_TEMPERATURE:
        raise _bad(
            f"temperature must lie in [0, {MAX_TEMPERATURE:g}], got {temperature}",
            "temperature",
            "invalid_value",
        )

    flags = {}
    for name in ("stream", "ignore_eos"):
        value = data.get(name)
        if value is not None and not isinstance(value, bool):
            raise _bad(f"{name} must be true or false, got {json.dumps(value)}", name)
        flags[name] = bool(value)

    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad(f"model must be a string, got {_type_name(model)}", "model")
    if model is not None:
        _unicode(model, "model")

    for name, allowed in _UNSUPPORTED.items():
        value = data.get(name)
        if value is not None and value != allowed:
            raise _bad(
                f"{name}={json.dumps(value)} is not supported by this server",
                name,
                "unsupported_parameter",
            )
    return CompletionRequest(prompt, max_tokens, float(temperature), model=model, **flags)
