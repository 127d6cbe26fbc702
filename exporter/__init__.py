"""gpu-inference-exporter: GPU health and inference-engine figures for Prometheus."""

__version__ = "0.1.0"
