"""syncwatch: probes connected mailboxes and calendars and says why one fails."""

__version__ = "0.1.0"
