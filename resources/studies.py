"""The ``study_storage`` resource: where Optuna studies live (`training.studies.StudyStorage`).

Configured with an ``EnvVar`` in the Definitions, so a Postgres URL and its password are read when a run
starts and never stored as literal run configuration.
"""

from __future__ import annotations

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field

from training.studies import StudyStorage

__all__ = ["StudyStorageResource"]


class StudyStorageResource(ConfigurableResource):
    """Empty ``url``: a journal file on the (local) data plane; ``postgresql://...`` on a cluster."""

    url: str = Field(default="", description="Empty, journal:///abs.log, a .log path, sqlite:///file.db or "
                     "postgresql://user:password@host:5432/db")  # fmt: skip

    def create_resource(self, context: InitResourceContext) -> StudyStorage:
        return StudyStorage(url=self.url)
