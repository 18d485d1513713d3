"""pytheus 0.6's ``from pytheus.experimental.compatibility import patch_client``.

The stable home is :mod:`pytheus.compat`; this module re-exports it.
"""

from pytheus.compat import patch_client

__all__ = ["patch_client"]
