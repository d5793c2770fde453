"""HTTP routes of the alerts service: thin, each calls one service method."""
