"""Reporters: plugins that only listen to the run hooks (``on_run_start``, ``on_sample_scored``, ``on_run_end``)."""
