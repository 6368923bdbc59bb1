"""What the test suites share; no test module imports another.

- ``examples``: the job specs of ``examples/``, as the README shows them.
- ``real_redis``: the real Redis on 127.0.0.1:6379 (or the embedded one), a key prefix
  per test, deleted afterwards; its fixtures reach every suite through tests/conftest.py.
- ``stack``: a whole local stack (the launcher of ``chainrule up``) on that Redis.
- ``jobs``: submitting jobs to a gateway and waiting on them.
- ``processes``: one service process on a free loopback port, with bounded waits.
- ``api``: a lone gateway process with the stores behind it, for the REST API tests.
- ``pki``: a throwaway PKI for the TLS tests.
"""
