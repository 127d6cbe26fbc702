"""Which metrics and labels a PromQL expression names, and whether they exist.

The alert rules and the dashboard panels are both checked with it, against the metric catalog
and the metrics the inference engines declare (exporter/engines.py: vLLM's and SGLang's names).
Not a full PromQL parser: a tokenizer that tells metric names from functions, keywords and label
names (inside `{...}`, `by (...)`, `on (...)`, ...), which is all the check needs. Expressions
are built from catalog entries and engine declarations; this check catches what a typo in
hand-written text (a selector string, an engine's metric name, a recording rule name, a label)
would otherwise let through.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from exporter.catalog import FAMILIES, Kind
from exporter.engines import engine_metrics


class Family(Protocol):
    """A metric family as the check needs it: a catalog family or an engine's metric."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> Kind: ...
    @property
    def labels(self) -> tuple[str, ...]: ...


#: Series Prometheus makes itself (not exported by anyone) that rules may reference.
PROMETHEUS_SERIES: frozenset[str] = frozenset({"up", "ALERTS"})

#: Labels a target adds to every series: Prometheus's own and the exporter's constant labels.
#: `cluster` comes from Prometheus's external labels or the chart's relabelings.
TARGET_LABELS: frozenset[str] = frozenset(
    {"job", "instance", "node", "namespace", "pod", "cluster"}
)

_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
    | {"by", "without", "on", "ignoring", "group_left", "group_right"}
    # aggregation operators are keywords too: `max without (reason) (x)` names no metric `max`
    | {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"}
    | {"bottomk", "topk", "quantile", "limitk", "limit_ratio"}
)
_GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

_TOKEN = re.compile(
    r"""
    (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<number>(?:0x[0-9a-fA-F]+|\d[0-9a-zA-Z_.]*))
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<space>\s+)
  | (?P<punct>=~|!~|!=|==|>=|<=|.)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class Selector:
    """A metric name as it appears in an expression, with the label names it matches on."""

    metric: str
    labels: tuple[str, ...]


def _tokens(expr: str) -> list[tuple[str, str]]:
    out = []
    for m in _TOKEN.finditer(expr):
        kind = m.lastgroup or "punct"
        if kind != "space":
            out.append((kind, m.group()))
    return out


def selectors(expr: str) -> list[Selector]:
    """Every metric selector in `expr`, in order, with the label names of its matchers."""
    tokens = _tokens(expr)
    found: list[Selector] = []
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "ident" and text in _GROUPING and nxt == "(":
            i = _skip_to(tokens, i + 1, ")")  # a list of label names
        elif kind == "ident" and text not in _KEYWORDS and nxt != "(":
            labels: tuple[str, ...] = ()
            if nxt == "{":
                end = _skip_to(tokens, i + 1, "}")
                labels = _matcher_labels(tokens[i + 2 : end])
                i = end
            found.append(Selector(text, labels))
        elif kind == "punct" and text == "{":  # a selector without a name: {__name__="x"}
            end = _skip_to(tokens, i, "}")
            found.append(Selector("", _matcher_labels(tokens[i + 1 : end])))
            i = end
        i += 1
    return found


def _skip_to(tokens: list[tuple[str, str]], start: int, close: str) -> int:
    for j in range(start, len(tokens)):
        if tokens[j][1] == close:
            return j
    raise ValueError(f"unbalanced expression: no {close!r}")


def _matcher_labels(tokens: list[tuple[str, str]]) -> tuple[str, ...]:
    return tuple(
        text
        for j, (kind, text) in enumerate(tokens)
        if kind == "ident" and j + 1 < len(tokens) and tokens[j + 1][1] in ("=", "!=", "=~", "!~")
    )


def metric_names(expr: str) -> list[str]:
    """The metric names `expr` selects, in order of appearance, without repeats."""
    return list(dict.fromkeys(s.metric for s in selectors(expr)))


def series_families(families: Iterable[Family] | None = None) -> dict[str, Family]:
    """Every series name a family exposes (a histogram: _bucket, _sum, _count) → its family;
    by default the catalog's families and the engines' declared metrics."""
    if families is None:
        families = [*FAMILIES.values(), *engine_metrics().values()]
    out: dict[str, Family] = {}
    for fam in families:
        if fam.kind is Kind.HISTOGRAM:
            for suffix in _HISTOGRAM_SUFFIXES:
                out[fam.name + suffix] = fam
        else:
            out[fam.name] = fam
    return out


def expression_problems(
    expr: str,
    recorded: Iterable[str] = (),
    families: Mapping[str, Family] | None = None,
) -> list[str]:
    """What in `expr` does not exist: metric names that are neither a catalog series, an
    engine's declared series, a recording rule in `recorded` nor a Prometheus series, and label
    names a family lacks."""
    known = series_families() if families is None else families
    recorded = set(recorded)
    problems: list[str] = []
    for sel in selectors(expr):
        if not sel.metric:
            problems.append("a selector without a metric name")
            continue
        if sel.metric in recorded or sel.metric in PROMETHEUS_SERIES:
            continue
        fam = known.get(sel.metric)
        if fam is None:
            problems.append(
                f"{sel.metric} is neither in the metric catalog, an engine's declared metric, "
                "nor a recording rule"
            )
            continue
        allowed = set(fam.labels) | TARGET_LABELS
        if sel.metric.endswith("_bucket") and fam.kind is Kind.HISTOGRAM:
            allowed.add("le")
        for label in sel.labels:
            if label not in allowed:
                problems.append(f"{sel.metric} has no label {label!r}")
    return problems


def with_matcher(expr: str, matcher: str, skip: Iterable[str] = ("ALERTS",)) -> str:
    """`expr` with the label matcher `matcher` (e.g. `node=~"a.*"`) added to every metric
    selector but those in `skip`: the same expression over a subset of the series."""
    skip = set(skip)
    pieces: list[str] = []
    spans = [(m.lastgroup or "punct", m.group(), m.end()) for m in _TOKEN.finditer(expr)]
    tokens = [(kind, text) for kind, text, _ in spans if kind != "space"]
    ends = [end for kind, _, end in spans if kind != "space"]
    inserts: dict[int, str] = {}  # character offset -> text to insert there
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "ident" and text in _GROUPING and nxt == "(":
            i = _skip_to(tokens, i + 1, ")")
        elif kind == "ident" and text not in _KEYWORDS and nxt != "(":
            if nxt == "{":
                end = _skip_to(tokens, i + 1, "}")
                if text not in skip:
                    empty = end == i + 2
                    inserts[ends[i + 1]] = matcher if empty else matcher + ", "
                i = end
            elif text not in skip:
                inserts[ends[i]] = "{" + matcher + "}"
        i += 1
    last = 0
    for offset in sorted(inserts):
        pieces.append(expr[last:offset] + inserts[offset])
        last = offset
    pieces.append(expr[last:])
    return "".join(pieces)
