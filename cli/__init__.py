"""The ``landscape`` command line: a thin shell over the library."""
