"""conveyor.routers."""
