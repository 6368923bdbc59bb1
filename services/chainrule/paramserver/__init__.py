"""The parameter server: θ per job, gradient buffers, optimizer state. Only Apply moves θ."""
