"""Group analyses: the plugin point (context, selection, runner) and the built-in analyses."""
