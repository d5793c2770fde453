"""Logic of the alerts service (schema registry lookups), independent of HTTP."""
