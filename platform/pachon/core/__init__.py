"""The core every part imports: settings, the Butler data repository, the catalog layer,
the platform state database, logging and progress display."""
