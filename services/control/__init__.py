"""The control API: accounts, reports, exports, connectors and pipelines."""
