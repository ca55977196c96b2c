"""Owner notifications through Apprise.

- planner.decide: pure decisions (owner incidents, coalescing, reminder cadence, transient
  wording, burst guard, SRE alerts) from inventory + health + remembered state.
- service.Notifier: the daemon's API (plan, deliver, release_burst, update_config, stats);
  state in store Records, messages in the store outbox.
- render: Jinja2 templates (config/templates, shipped as agent/notify/templates), validate().
- transport: Transport Protocol, NotifyError(permanent), AppriseTransport.
- commands.notifications_command: `syncwatch notifications`.
"""
