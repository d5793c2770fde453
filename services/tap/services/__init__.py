"""Business logic of the TAP service: queries, UWS jobs, VOSI metadata, history."""
