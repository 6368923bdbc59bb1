"""Fixtures every suite may use; their code lives in tests/support/."""

pytest_plugins = ["tests.support.real_redis"]
