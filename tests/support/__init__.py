"""What every test layer shares, in one place, so no test module keeps its own copy.

- :mod:`tests.support.ci` — ``IN_CI`` and :func:`~tests.support.ci.unavailable` (skip on a
  developer machine, fail in CI).
- Throw-away PostgreSQL databases come from :mod:`engine.devtools.databases` (the
  benchmarks use them too).
- :mod:`tests.support.waiting` — :func:`~tests.support.waiting.eventually`: wait, bounded,
  for a condition that has no event to await (never sleep and hope).
- :mod:`tests.support.net` — a free TCP port on 127.0.0.1.
- :mod:`tests.support.http` — raw HTTP to an engine's API (:class:`~tests.support.http.Api`).
- :mod:`tests.support.tenants` — a new tenant, its request headers, a bearer token.
- :mod:`tests.support.calls` — calls placed and moved through statuses over the API.
- :mod:`tests.support.sse` — the client side of an engine's event stream (SSE).
- :mod:`tests.support.callbacks` — an ERP endpoint recording the engine's callbacks.
- :mod:`tests.support.events` — call events built in memory (bus and SSE tests).
- :mod:`tests.support.cli` — the ``ctc`` command as a subprocess and its environment.
- :mod:`tests.support.tcp_proxy` — a TCP proxy a test can cut (ARI, PostgreSQL).
- :mod:`tests.support.transfers` — a session's transfer rows, in order.
- :mod:`tests.support.yaml_bombs` — hostile YAML the loaders must refuse.

Fixtures stay in the conftest of the layer that uses them: ``tests/conftest.py`` (databases),
``tests/integration/conftest.py`` (``api_engine``: an engine without Asterisk; ``cli_env``),
``tests/e2e/conftest.py`` (the sandbox, phones, ARI, ``c2c_engine`` and ``ivr_engine``).
"""

__all__: list[str] = []
