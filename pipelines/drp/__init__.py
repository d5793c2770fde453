"""Data release processing: coadds, catalogs, astrometry with proper motion and parallax."""
