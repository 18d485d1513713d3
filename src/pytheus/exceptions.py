"""Every error pytheus raises derives from :class:`PytheusException`.

    PytheusException
    ├── MetricDefinitionException   a metric was defined wrongly (name, labels, options)
    │   ├── InvalidMetricNameException
    │   ├── BucketException
    │   └── DuplicateMetricException  the registry holds a conflicting metric of that name
    ├── LabelValidationException    labels() got a name the metric does not declare
    ├── UnobservableMetricException a required label has no value yet
    ├── InvalidValueException       a value a metric cannot take
    ├── PytheusCompatibilityException  prometheus_client code patch_client does not cover
    ├── InvalidBackendClassException
    ├── InvalidBackendConfigException
    └── BackendUnavailableException a scrape could not read the backend (serve HTTP 503)

Catch ``PytheusException`` to handle them all. The mistakes prometheus_client reports with a
``ValueError`` (definitions, labels, values) are ``ValueError`` here too, so code written for it
catches them.
"""


class PytheusException(Exception):
    """Base class of every exception pytheus raises."""


class MetricDefinitionException(PytheusException, ValueError):
    """A metric definition breaks a rule: raised when the metric is created or registered.

    A ``ValueError`` too, as prometheus_client raises for the same mistakes.
    """


class InvalidMetricNameException(MetricDefinitionException):
    """A metric name, registry prefix or label name is not valid."""


class BucketException(MetricDefinitionException):
    """Histogram buckets are not a strictly increasing sequence of numbers."""


class DuplicateMetricException(MetricDefinitionException):
    """A registry already holds a different metric under the same name."""


class LabelValidationException(PytheusException, ValueError):
    """A label name is not one of the metric's ``required_labels`` or is invalid."""


class UnobservableMetricException(PytheusException, ValueError):
    """The metric cannot record: some required label has no value yet."""


class InvalidValueException(PytheusException, ValueError):
    """A value the metric cannot take, such as a negative counter increment."""


class InvalidBackendClassException(PytheusException):
    """The backend class could not be imported or does not implement the Backend protocol."""


class InvalidBackendConfigException(PytheusException):
    """The backend configuration could not be read or is not valid."""


class BackendUnavailableException(PytheusException):
    """The backend could not be read during a scrape; the scrape must fail (HTTP 503)."""


class PytheusCompatibilityException(PytheusException, ValueError):
    """Code written for prometheus_client uses something ``patch_client`` does not cover."""
