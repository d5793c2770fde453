"""Alert stream service: Kafka topics, the schema registry, filters and the archive (a later issue)."""
