"""The REST gateway: accepts jobs and reports their state and metrics, from Redis only."""
