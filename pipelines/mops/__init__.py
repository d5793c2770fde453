"""Moving-object processing: tracklets, linking and orbit fitting (a later issue)."""
