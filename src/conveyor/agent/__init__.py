"""`conveyor agent ENV`: the long-lived Conveyor process of an environment.

It runs as a program of the home's supervisord (beside the routers; on a fleet too,
where it reaches the hosts over SSH like the CLI does), started and replaced by the
deploys of environments that have `jobs:` or `monitors:` (`conveyor.agent.program`),
and stopped by `conveyor down` and `conveyor shutdown`. It runs the scheduled jobs
(`conveyor.agent.scheduler`, one run in `conveyor.agent.runs`) and the monitors' rules
and probes (`conveyor.monitors.runner`).
"""
