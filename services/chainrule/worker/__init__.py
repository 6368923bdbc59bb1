"""The worker: task -> pull θ -> gradient -> push -> complete, as many of them as you like."""
