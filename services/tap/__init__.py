"""IVOA TAP 1.1 service with an ADQL 2.1 translator, UWS jobs and VOSI endpoints."""
