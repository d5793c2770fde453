"""Image services: ObsCore, SIA 2.0, SODA cutouts and DataLink (a later issue)."""
