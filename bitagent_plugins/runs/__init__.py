"""Looking at past runs: ``bitagent runs list/show``, ``bitagent compare`` and ``bitagent report`` (one
self-contained, offline HTML file comparing runs)."""
