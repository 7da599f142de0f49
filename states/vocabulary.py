"""The state vocabulary of a container. Imports nothing, so anything may import it."""

CREATED = "created"
STARTING = "starting"
RUNNING = "running"
PAUSED = "paused"
DEAD = "dead"
REMOVING = "removing"

STATES = (CREATED, STARTING, RUNNING, PAUSED, DEAD, REMOVING)

# A process exists (or is being made) in these states.
ACTIVE = frozenset({STARTING, RUNNING, PAUSED})
