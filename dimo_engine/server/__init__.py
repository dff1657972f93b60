"""The engine service the Blender add-on talks to: FastAPI routes (`app`) over a job queue (`jobs`)."""

from dimo_engine.server.app import create_app
from dimo_engine.server.jobs import Job, JobRunner, Limits

__all__ = ["Job", "JobRunner", "Limits", "create_app"]
