"""Raw failure -> Cause (placeholder until its owner fills it in)."""

from agent.model import Cause, Evidence, Failure


def classify(ev: Evidence) -> Failure:
    return Failure(cause=Cause.PROTOCOL_ERROR, detail=ev.text)
