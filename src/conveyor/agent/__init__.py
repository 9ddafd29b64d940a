"""`conveyor agent ENV`: the long-lived Conveyor process of an environment.

It runs as a program of the home's supervisord (beside the routers; on a fleet too,
where it reaches the hosts over SSH like the CLI does), started and replaced by the
deploys of environments that have `jobs:` (`conveyor.agent.program`), and stopped by
`conveyor down` and `conveyor shutdown`. Today it does one thing, the scheduled jobs
(`conveyor.agent.scheduler`, one run in `conveyor.agent.runs`); it is the process that
will also watch the environment and answer an API.
"""
