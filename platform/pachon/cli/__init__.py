"""The ``pachon`` command-line tool."""
