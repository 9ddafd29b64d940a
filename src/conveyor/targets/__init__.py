"""conveyor.targets."""
