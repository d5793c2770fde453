"""Where the alerts service reads from: the schemas shipped with lsst-alert-packet."""
