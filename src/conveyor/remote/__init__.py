"""The CLI acting on a remote `conveyor server` (`--server URL` / `CONVEYOR_SERVER`)."""
