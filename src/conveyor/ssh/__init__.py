"""SSH to the hosts of an environment: one connection per host (asyncssh), host keys
checked against the Conveyor home's own known_hosts file, errors naming the host."""
