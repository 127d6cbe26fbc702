"""What every alert definition shares: identity labels, value formats, description pieces."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from alerts.model import IDENTITY, TierRule
from alerts.thresholds import Duration, Tier, Tiers

UP = "up"  # Prometheus's own per-target series (exporter.promql.PROMETHEUS_SERIES)
ALERTS = "ALERTS"  # Prometheus's own series of pending and firing alerts

WHERE = "node {{ $labels.node }}{{ with $labels.cluster }} (cluster {{ . }}){{ end }}"
GPU = "GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on " + WHERE
MODEL = "{{ with $labels.model }} serving {{ . }}{{ end }}"
ENGINE = "The {{ $labels.engine }} engine" + MODEL + " of job {{ $labels.job }} on " + WHERE
SERVICE = (
    "The {{ $labels.engine }} inference service {{ $labels.job }}" + MODEL + "{{ with "
    "$labels.namespace }} in namespace {{ . }}{{ end }}{{ with $labels.cluster }} (cluster "
    "{{ . }}){{ end }}"
)
PERCENT = "{{ $value | humanizePercentage }}"
SECONDS = "{{ $value | humanizeDuration }}"
NUMBER = "{{ $value | humanize }}"


def num(x: float) -> str:
    """A threshold as PromQL writes it: 0.75, 85, 1e-05."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def pct(x: float) -> str:
    """0.75 → 75%."""
    return f"{round(x * 100, 6):g}%"


def secs(x: float) -> str:
    """5 → 5s, 0.25 → 250ms."""
    return f"{round(x * 1000, 3):g}ms" if x < 1 else f"{x:g}s"


def regex_of(values: Iterable[object]) -> str:
    """A regular expression matching exactly these label values: 48|62|63."""
    return "|".join(str(v) for v in values)


def le_regex(bound: float) -> str:
    """The `le` label values one bucket bound may be written as ("1" or "1.0"; "2.5")."""
    forms = {num(bound), repr(float(bound))}
    return "|".join(sorted(f.replace(".", "\\\\.") for f in forms))


def either(words: Iterable[str]) -> str:
    """("a", "b", "c") → "a, b or c"."""
    items = list(words)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def held(for_: Duration) -> str:
    return f" for {for_}" if for_.seconds else ""


def by(scope: str, *extra: str) -> str:
    """The grouping of a scope's identity: `by (cluster, node, gpu, uuid)`."""
    return "by (" + ", ".join((*IDENTITY[scope], *extra)) + ")"


def max_by(scope: str, expr: str, *extra: str) -> str:
    """`expr` reduced to the scope's identity (drops instance and pod, which a rollout
    changes), keeping the worst series."""
    return f"max {by(scope, *extra)} ({expr})"


def tier_above(
    severity: str,
    expr: str,
    tier: Tier,
    describe: str,
    condition: str,
    fmt: Callable[[float], str] = num,
    op: str = ">",
) -> TierRule:
    """`expr > threshold` held for the tier's `for`; `describe` and `condition` may contain
    `<threshold>` and `<for>`."""
    shown = fmt(tier.threshold)

    def fill(text: str) -> str:
        return text.replace("<threshold>", shown).replace("<for>", held(tier.for_))

    return TierRule(
        severity, f"{expr} {op} {num(tier.threshold)}", tier.for_, fill(describe), fill(condition)
    )


def two_tiers(
    expr: str,
    tiers: Tiers,
    describe: str,
    condition: str,
    fmt: Callable[[float], str] = num,
) -> tuple[TierRule, ...]:
    """A warning and a critical rule: `expr > threshold` each."""
    return (
        tier_above("warning", expr, tiers.warning, describe, condition, fmt),
        tier_above("critical", expr, tiers.critical, describe, condition, fmt),
    )
