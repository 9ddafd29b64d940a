"""conveyor.checks."""
