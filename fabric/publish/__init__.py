"""Publishing scores back to business systems through an outbox (see `fabric.publish.outbox`)."""

from fabric.publish.delivery import PublishResult, deliver, plan, publish, replay

__all__ = ["PublishResult", "deliver", "plan", "publish", "replay"]
