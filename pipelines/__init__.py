"""Pachón's data-processing pipelines: simulator, prompt processing, moving objects,
data release and quality metrics.

Pipelines never import ``pachon.services`` or the hub: they meet the services only
through the Butler repository, the catalog and APDB databases and the alert topics.
"""
