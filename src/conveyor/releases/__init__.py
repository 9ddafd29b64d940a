"""conveyor.releases."""
