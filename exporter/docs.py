"""Documentation generated from the catalog: the README's metric table."""

from __future__ import annotations

from exporter.catalog import FAMILIES, MetricFamily

_SECTIONS = (
    ("gpu_", "GPU (DCGM, NVML or simulated)"),
    ("torch_cuda_", "PyTorch caching allocator"),
    ("inference_", "Inference harness"),
    ("exporter_", "The exporter itself"),
    ("process_", "The exporter's process (off with --web.disable-exporter-metrics)"),
)


def _row(fam: MetricFamily) -> str:
    labels = ", ".join(f"`{label}`" for label in fam.labels) or "–"
    return f"| `{fam.name}` | {fam.kind} | {labels} | {fam.help} |"


def metrics_table() -> str:
    """Markdown tables of every catalog family, one section per prefix."""
    out: list[str] = []
    for prefix, title in _SECTIONS:
        families = [f for f in FAMILIES.values() if f.name.startswith(prefix)]
        if not families:
            continue
        out += [f"#### {title}", "", "| metric | type | labels | meaning |", "|---|---|---|---|"]
        out += [_row(f) for f in families]
        out.append("")
    return "\n".join(out).rstrip() + "\n"
