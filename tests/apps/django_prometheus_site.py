"""A Django site instrumented by django-prometheus, as its README shows, with pytheus's
``patch_client`` in the settings (read before any app is imported): under gunicorn's workers
it counts across processes. Settings, URLconf and WSGI application in one module:
``DJANGO_SETTINGS_MODULE=tests.apps.django_prometheus_site``."""

import prometheus_client

from pytheus.compat import patch_client

patch_client(prometheus_client)

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.urls import include, path  # noqa: E402

DEBUG = False
SECRET_KEY = "tests-only"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = __name__
INSTALLED_APPS = ["django_prometheus"]
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]
DATABASES: dict[str, object] = {}
USE_TZ = True


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hello")


urlpatterns = [path("hello/", hello), path("", include("django_prometheus.urls"))]

application = get_wsgi_application()
