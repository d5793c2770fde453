"""Documents the service answers with: UWS job XML, VOSI availability/capabilities/tables,
the DALI examples page and the HTML landing page. Pure functions of domain objects."""
