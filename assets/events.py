"""Event-driven ingestion: a sensor on the broker queue (RabbitMQ) or subject (NATS JetStream) of
"source exported" CloudEvents.

Each tick takes up to `max_events` messages (manual ack; `fabric.ingest.events`). A valid event
requests a run of its source's ingest assets (or the one entity named) for its day, with run key
= the event id; the message is acknowledged once the request is yielded. Dagster launches one run
per run key, so an event delivered twice (redelivery after a crash, or re-sent by the exporter)
never starts a second run. An invalid event is logged with the reason and moved to the dead
letter queue (subject); a broker that cannot be reached skips the tick. Only a configuration
error (a credential variable not set, a NATS stream or consumer contradicting fabric.yaml)
fails the tick.
"""

from collections.abc import Iterator

import dagster as dg

from fabric.config import FabricConfig
from fabric.ingest.events import BrokerUnavailable, InvalidEvent, open_queue, parse_event

SENSOR_NAME = "source_exported_events"


def source_events_sensors(config: FabricConfig) -> list[dg.SensorDefinition]:
    """The events sensor when fabric.yaml has a `source_events` section."""
    return [] if config.source_events is None else [_events_sensor(config)]


def _events_sensor(config: FabricConfig) -> dg.SensorDefinition:
    settings = config.source_events
    assert settings is not None
    keys = [dg.AssetKey(["raw", f"{s}__{e}"]) for s, e in config.source_entities()]

    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=settings.interval_seconds,
        asset_selection=keys,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Ingests a source's day when a 'source exported' event arrives on {settings.label}.",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> Iterator[dg.RunRequest | dg.SkipReason]:
        requested = 0
        try:
            with open_queue(settings) as queue:
                for _ in range(settings.max_events):
                    delivery = queue.get()
                    if delivery is None:
                        break
                    try:
                        event = parse_event(config, delivery.body)
                    except InvalidEvent as exc:
                        context.log.warning(
                            f"invalid event on {settings.label} moved to {queue.dead_letter_queue}: {exc}"
                        )
                        queue.dead_letter(delivery, str(exc))
                        continue
                    context.log.info(
                        f"event {event.event_id} from {event.event_source}: ingest {event.source} "
                        f"({', '.join(event.entities)}) for {event.partition}"
                        + (" (redelivered)" if delivery.redelivered else "")
                    )
                    requested += 1
                    yield dg.RunRequest(
                        run_key=event.run_key,
                        partition_key=event.partition.isoformat(),
                        asset_selection=[
                            dg.AssetKey(["raw", f"{event.source}__{e}"]) for e in event.entities
                        ],
                        tags={"fabric/event_id": event.event_id, "fabric/event_source": event.event_source},
                    )
                    queue.ack(delivery)
        except BrokerUnavailable as exc:
            yield dg.SkipReason(f"broker not available, retrying next tick: {exc}")
            return
        if not requested:
            yield dg.SkipReason(f"no new event on {settings.label}")

    return _sensor
