"""Real servers the agent can run locally for its demo, benchmarks and tests (no pytest)."""
