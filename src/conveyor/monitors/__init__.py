"""Monitors: probes and alert rules that keep watching an environment after its deploys.

`monitors:` of an environment (`conveyor.config.models.monitors`) is run by the
environment's agent (`conveyor agent ENV`, `conveyor.monitors.runner`). The pure
parts: a rule's expression (`rules`), the counters of a window (`window`), and the
state machine ok -> pending -> firing -> resolved with `for:` (`state`).
"""
