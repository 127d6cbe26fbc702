"""API settings that contradict the model or each other, refused when `serve` starts.

Each message names the flags and says what would fit. Torch-free.
"""

from __future__ import annotations

import math

from exporter.harness.api.admission import AdmissionLimits
from exporter.harness.loadgen import LengthDistribution, LoadProfile


def typical(dist: LengthDistribution) -> float:
    """The most a bounded distribution draws; the median of an unbounded one."""
    p = dist.params
    if dist.kind == "fixed":
        return p[0]
    if dist.kind == "uniform":
        return p[1]
    if dist.kind == "exponential":
        return p[0] * math.log(2)
    return p[0]  # lognormal: its median


def check_harness_limits(
    limits: AdmissionLimits, load: LoadProfile | None, model: str, context: int
) -> None:
    """ValueError (one line) when the token budget exceeds the model's context, or the
    synthetic load would send lengths the budget refuses (all of a bounded distribution's
    range must fit; half of an unbounded one's draws)."""
    if limits.max_prompt_tokens >= context:
        raise ValueError(
            f"--harness.max-prompt-tokens {limits.max_prompt_tokens} is beyond the {model} "
            f"model's context of {context} tokens (prompt and output together): use at most "
            f"{context - 1}"
        )
    if limits.max_tokens >= context:
        raise ValueError(
            f"--harness.max-tokens {limits.max_tokens} is beyond the {model} model's context "
            f"of {context} tokens (prompt and output together): use at most {context - 1}"
        )
    if load is None:
        return
    for flag, dist, budget, budget_flag in (
        (
            "--harness.load.prompt-tokens",
            load.prompt_tokens,
            limits.max_prompt_tokens,
            "--harness.max-prompt-tokens",
        ),
        ("--harness.load.max-tokens", load.max_tokens, limits.max_tokens, "--harness.max-tokens"),
    ):
        most = typical(dist)
        if most > budget:
            what = "reaches" if dist.kind in ("fixed", "uniform") else "has a median of"
            raise ValueError(
                f"{flag} {dist} {what} {most:g} tokens, over {budget_flag} {budget}: the "
                "synthetic load would be refused at the edge; lower one or raise the other"
            )
