"""Serving metrics: WSGI and ASGI apps, a stand-alone HTTP(S) server, Pushgateway, text files.

Every name here is also importable from :mod:`pytheus.exposition`.
"""

from pytheus.serving.asgi import make_asgi_app
from pytheus.serving.http_server import MetricsServer, start_http_server
from pytheus.serving.push import delete_from_gateway, push_to_gateway, pushadd_to_gateway
from pytheus.serving.textfile import write_to_textfile
from pytheus.serving.wsgi import make_wsgi_app

__all__ = [
    "MetricsServer",
    "delete_from_gateway",
    "make_asgi_app",
    "make_wsgi_app",
    "push_to_gateway",
    "pushadd_to_gateway",
    "start_http_server",
    "write_to_textfile",
]
