"""Web serving (chat API, Rasa channel, widget, health/metrics) and the command line.

``create_app`` is imported lazily so that ``import serving`` (e.g. by the CLI) does not pull in Flask's app.
"""

from typing import Any


def create_app(config: Any = None) -> Any:
    from serving.app import create_app as factory

    return factory(config)


__all__ = ["create_app"]
