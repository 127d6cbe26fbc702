"""The README's engine table: which `inference:*` series each engine provides, from which of its
own metrics, and why where it provides none (generated from exporter/engines.py and the layer's
names, so it cannot drift from the rules)."""

from __future__ import annotations

from alerts.definitions import layer
from alerts.definitions.common import regex_of
from alerts.thresholds import DEFAULTS, Thresholds
from exporter.engines import ENGINES, Engine, Figure

#: What each figure is, in the table's first column.
FIGURE_WORDS = {
    Figure.RUNNING: "Requests running",
    Figure.WAITING: "Requests waiting",
    Figure.KV_CACHE: "KV-cache utilization (0-1)",
    Figure.KV_FRAGMENTATION: "KV-cache fragmentation (0-1)",
    Figure.READY: "Ready (1) or not (0)",
    Figure.PREEMPTIONS: "Preemptions per second",
    Figure.PROMPT_TOKENS: "Prompt tokens per second",
    Figure.GENERATION_TOKENS: "Generated tokens per second",
    Figure.TIME_TO_FIRST_TOKEN: "Time to first token",
    Figure.INTER_TOKEN_LATENCY: "Inter-token latency",
    Figure.REQUEST_DURATION: "End-to-end request latency",
    Figure.QUEUE_DURATION: "Queue time",
    Figure.REQUESTS: "Requests per second that count for the error budget",
    Figure.REQUEST_ERRORS: "Failed requests per second",
}


def _series(figure: Figure, t: Thresholds) -> str:
    names = layer.layer_records(t)[figure]
    shown = names[:2] + (["…"] if len(names) > 2 else [])
    return "<br>".join(f"`{n}`" if n != "…" else n for n in shown)


def _cell(e: Engine, figure: Figure, t: Thresholds) -> str:
    if figure in e.lacks:
        return f"– {e.lacks[figure]}"
    p = e.provides[figure]
    first, *aliases = p.metrics
    text = f"`{first.name}`"
    if p.matchers:
        matchers = p.matchers.replace("{error_outcomes}", regex_of(t.inference_error_outcomes))
        text = f"`{first.name}{{{matchers}}}`"
    if aliases:
        text += ", else " + ", ".join(f"`{a.name}` (deprecated)" for a in aliases)
    if p.ranks:
        text += f" (once over {', '.join(f'`{r}`' for r in p.ranks)})"
    if p.note:
        text += f": {p.note}"
    return text.replace("|", "\\|")


def engine_table(t: Thresholds = DEFAULTS) -> str:
    """The markdown table, one row per figure of the layer."""
    head = ["figure", "series (`engine`, `model` labels)", *(e.title for e in ENGINES)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for figure in Figure:
        cells = [FIGURE_WORDS[figure], _series(figure, t), *(_cell(e, figure, t) for e in ENGINES)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [
        f"Releases: {', '.join(f'{e.title}: {e.releases}' for e in ENGINES)}. Latency "
        "histograms keep each engine's own bucket layout; a latency objective's target that is "
        "not one of an engine's bounds is estimated between the two around it."
    ]
    return "\n".join(lines) + "\n"
