"""Migration revisions; each file's ``down_revision`` names the one before it."""
