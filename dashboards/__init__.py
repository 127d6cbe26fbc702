"""Grafana dashboards generated with grafanalib from the metric catalog.

Each dashboard module builds a list of panel specs whose queries are written with catalog
entries, so a panel can only plot a metric that exists; `dashboards.build` turns them into
grafanalib objects and JSON (committed under dashboards/generated/).
"""
