"""A service process: settings, the context built from them, the app and its loops (with the
one retry helper), logs and metrics."""
