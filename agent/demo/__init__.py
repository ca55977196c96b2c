"""`syncwatch demo`: the agent's whole job on local servers (see agent.demo.command)."""
