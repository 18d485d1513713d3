"""pytheus: Prometheus metrics for Python, with the same API for one process and many.

Example::

    from pytheus.metrics import Counter
    from pytheus.exposition import generate_metrics

    orders = Counter("orders_total", "Orders placed.")
    orders.inc()
    print(generate_metrics())
"""

__version__ = "0.7.0"
