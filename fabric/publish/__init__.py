"""Publishing scores back to business systems (CRM SQLite upsert, CSV file drop) with a sync log."""

from fabric.publish.crm import publish_crm
from fabric.publish.delivery import PublishResult
from fabric.publish.files import publish_files

__all__ = ["PublishResult", "publish_crm", "publish_files"]
