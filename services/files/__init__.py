"""User files over WebDAV (a later issue)."""
