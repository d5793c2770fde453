"""Alert packets and the alert stream, shared by prompt processing (producer) and the alerts service.

Why in the core: the prompt pipeline builds and publishes alerts, the alerts service serves the
schema registry and supervises the broker, notebooks consume; services never import
pipelines, so the packet code lives here where all of them may import it.

Modules
-------
``schema``    the LSST alert schema from ``lsst-alert-packet``, IDs ``major*100+minor``, topic names
``packet``    APDB rows → alert dict (:func:`build_alert`), validation, Avro, Confluent framing
``cutouts``   FITS postage stamps in nJy with variance and a local TAN WCS
``archive``   Parquet archive by observing night; knows what was published
``producer``  :class:`AlertProducer`: archive, then publish unkeyed with ``producer_timestamp``
``consumer``  :class:`AlertConsumer`: decode via the registry, dedupe, user-prefixed groups
``broker``    the embedded Tansu broker and bootstrap discovery (``PACHON_KAFKA_BOOTSTRAP``)

Example (prompt processing, one detector)::

    from pachon.core.alerts import build_alert, make_cutouts, publish_alerts

    alerts = [
        build_alert(src, prv_sources=history[src["diaObjectId"]], dia_object=objects[src["diaObjectId"]],
                    cutouts=make_cutouts(src["x"], src["y"], difference=(d.image, d.variance, d.wcs),
                                         science=(s.image, s.variance, s.wcs),
                                         template=(t.image, t.variance, t.wcs)))
        for src in dia_sources
    ]
    report = publish_alerts(repo, alerts)   # archive, then publish (archive only if no broker runs)
"""

from pachon.core.alerts.archive import AlertArchive, ArchivedAlert, night_of
from pachon.core.alerts.broker import BrokerError, EmbeddedBroker, resolve_bootstrap
from pachon.core.alerts.consumer import AlertConsumer, ReceivedAlert, user_group
from pachon.core.alerts.cutouts import Cutouts, cutout_size, make_cutout, make_cutouts
from pachon.core.alerts.packet import (
    AlertInputError,
    build_alert,
    build_alerts,
    complete_dia_object,
    complete_dia_source,
    decode_alert,
    encode_alert,
    frame,
    serialize_alert,
    unframe,
    validate_alert,
)
from pachon.core.alerts.producer import AlertProducer, PublishReport, publish_alerts
from pachon.core.alerts.schema import AlertSchema, all_schemas, latest_schema, load_schema, topic_name

__all__ = [
    "AlertArchive",
    "AlertConsumer",
    "AlertInputError",
    "AlertProducer",
    "AlertSchema",
    "ArchivedAlert",
    "BrokerError",
    "Cutouts",
    "EmbeddedBroker",
    "PublishReport",
    "ReceivedAlert",
    "all_schemas",
    "build_alert",
    "build_alerts",
    "complete_dia_object",
    "complete_dia_source",
    "cutout_size",
    "decode_alert",
    "encode_alert",
    "frame",
    "latest_schema",
    "load_schema",
    "make_cutout",
    "make_cutouts",
    "night_of",
    "publish_alerts",
    "resolve_bootstrap",
    "serialize_alert",
    "topic_name",
    "unframe",
    "user_group",
    "validate_alert",
]
