"""The scheduler: job state machine, worker membership, task assignment, the step clock.
It is the only component that advances θ (through the parameter server's Apply)."""
