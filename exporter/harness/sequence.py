"""One request as the engine thread sees it: its tokens, its KV blocks and its timestamps."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Outcome(StrEnum):
    """How a request ended: the `outcome` label of inference_requests_total."""

    OK = "ok"
    REJECTED = "rejected"  # refused before it reached the engine's queue (too long, bad input)
    SHED = "shed"  # refused because the engine was too loaded (part of admission control)
    TIMEOUT = "timeout"  # its deadline passed, queued or running
    ERROR = "error"  # the model step failed
    CANCELLED = "cancelled"  # aborted by its caller (a client that went away)


@dataclass(eq=False)
class Sequence:
    """A request in flight. Only the engine thread mutates it."""

    request_id: int
    token_ids: list[int]  # prompt, then every generated token
    num_prompt: int
    max_tokens: int
    arrival: float
    deadline: float | None = None
    temperature: float = 0.0
    ignore_eos: bool = False
    block_table: list[int] = field(default_factory=list)
    num_cached: int = 0  # leading tokens whose K and V are in the cache
    first_scheduled: float | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None
    preemptions: int = 0
    finish_reason: str | None = None  # stop (EOS), length (max_tokens or the model's limit)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_output(self) -> int:
        return len(self.token_ids) - self.num_prompt

    @property
    def output_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt :]
