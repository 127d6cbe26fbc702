"""Web security shared by the exporter's listeners: the `--web.config.file` format (config),
basic auth (auth), and its application to a listener with reloading (security)."""
