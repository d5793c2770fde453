"""Alert stream service: Kafka topics, the schema registry, filters and the archive (a later issue).

What runs here (``pachon alerts broker``):

* ``supervisor``  the embedded Tansu broker (in-memory Kafka) on loopback, its alert topic, the
  restart-with-replay loop, and ``<repo>/state/kafka.json`` for discovery;
* ``main``        the read-only Confluent-compatible schema registry (FastAPI): ``/subjects``,
  ``/subjects/{s}/versions[/{v}]``, ``/schemas/ids/{id}``, readable without login;
  ``handlers/`` → ``services/registry.py`` → ``storage/schemas.py`` (the schemas shipped by
  ``lsst-alert-packet``, IDs ``major*100+minor``).

Packets, the producer, the consumer helpers and the archive live in :mod:`pachon.core.alerts`,
because prompt processing (a pipeline) and notebooks use them too.
"""
