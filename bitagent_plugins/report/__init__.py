"""The ``bitagent report`` command: one self-contained, offline HTML file comparing runs."""
