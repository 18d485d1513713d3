"""``python -m pytheus``: the ``pytheus`` command (see :mod:`pytheus.cli`)."""

from pytheus.cli import main

raise SystemExit(main())
