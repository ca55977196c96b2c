"""Persistence of health, incidents and the notification outbox."""
