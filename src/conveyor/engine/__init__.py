"""conveyor.engine."""
