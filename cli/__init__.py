"""The ``modelog`` command line: :mod:`modelog.cli.main` is the root group; one module per command group.

Commands reach the processors only inside their bodies (a lazy import), so ``modelog --help``
and the SDK never load faust.
"""
