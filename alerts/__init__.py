"""Alert rules for gpu-inference-exporter, defined in Python from the metric catalog.

- `alerts.thresholds`: every threshold and `for` duration (defaults, YAML overrides); the
  dashboards read it too.
- `alerts.definitions`: the alerts and the recording rules, built from catalog entries.
- `exporter.promql` (shared with the dashboards): every metric an expression names exists.
- `alerts.rules`, `alerts.alertmanager`, `alerts.runbooks`: the generated files.
"""
