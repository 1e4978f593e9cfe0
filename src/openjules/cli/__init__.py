"""The ``openjules`` command."""
