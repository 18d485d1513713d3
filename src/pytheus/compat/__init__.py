"""Run code written for prometheus_client on pytheus, across processes, unchanged.

Call :func:`patch_client` once, before the code that imports prometheus_client's names::

    import prometheus_client
    from pytheus.compat import patch_client

    patch_client(prometheus_client)

From then on ``prometheus_client.Counter`` and the other metric types record into the pytheus
backend in force (``PYTHEUS_MULTIPROC_DIR``, Redis, or memory), and prometheus_client's own
``generate_latest``, ``make_wsgi_app``, ``start_http_server``... serve the totals of every
process. docs/migrating.md says what is covered and what is not.
"""

from pytheus.compat._metrics import Counter, Enum, Gauge, Histogram, Info, Summary
from pytheus.compat._patch import MultiProcessCollector, mark_process_dead, patch_client
from pytheus.exceptions import PytheusCompatibilityException

__all__ = [
    "Counter", "Enum", "Gauge", "Histogram", "Info", "MultiProcessCollector",
    "PytheusCompatibilityException", "Summary", "mark_process_dead", "patch_client",
]  # fmt: skip
