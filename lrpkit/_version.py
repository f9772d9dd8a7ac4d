"""The package version (here, not in ``lrpkit/__init__``, so that library modules can record it
without importing the package facade, which loads the configuration)."""
__version__ = "0.1.0"
