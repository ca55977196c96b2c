"""Owner notifications through Apprise."""
