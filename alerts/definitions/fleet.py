"""One page for a fleet-wide fault: the same critical alert on many nodes at once (a bad
driver rollout, a cooling failure in a row, a firmware bug) is one incident, and Alertmanager
silences the per-GPU and per-node copies of it in that cluster. Warnings do not count: three
nodes of a large fleet with the same warning (power capping in a busy hour) are not a page."""

from __future__ import annotations

from alerts.definitions.common import ALERTS, held, num
from alerts.model import Alert, TierRule
from alerts.thresholds import Thresholds

FLEET_ALERT = "GpuFleetWideFault"
#: The label of the fleet alert that names the alert seen on many nodes.
PROBLEM = "problem"


def fleet_alerts(t: Thresholds) -> list[Alert]:
    f = t.fleet_wide
    firing = (
        f'group by (cluster, node, alertname) ({ALERTS}{{alertstate="firing", '
        f'scope=~"gpu|node", severity="critical"}})'
    )
    return [
        Alert(
            FLEET_ALERT,
            "fleet",
            "gpu",
            "The same GPU alert fires on many nodes at once",
            "{{ $value }} nodes",
            t.links.fleet_dashboard,
            "fleet",
            (
                TierRule(
                    "critical",
                    f"count by (cluster, {PROBLEM}) (label_replace({firing}, "
                    f'"{PROBLEM}", "$1", "alertname", "(.+)")) >= {num(f.min_nodes)}',
                    f.for_,
                    "{{ $labels.problem }} fires on {{ $value }} nodes"
                    "{{ with $labels.cluster }} of cluster {{ . }}{{ end }} at once"
                    f"{held(f.for_)}: one cause for all of them (a driver or firmware rollout, "
                    "cooling, power, the fabric). This is the one page; Alertmanager silences "
                    "the per-node copies.",
                    f"one critical alert firing on at least {num(f.min_nodes)} nodes of a "
                    "cluster"
                    f"{held(f.for_)}",
                ),
            ),
            key="fleet_wide",
            clears="fewer nodes have the alert",
        )
    ]
