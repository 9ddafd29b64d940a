"""`conveyor server`: the control plane's HTTP API, its tokens, roles and audit."""
