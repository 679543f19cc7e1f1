"""The ``provisioner`` resource: which instance type each trial runs on (`cluster.provisioner.NodeProvisioner`)."""

from __future__ import annotations

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field

from cluster.provisioner import NodeProvisioner

__all__ = ["NodeProvisionerResource"]


class NodeProvisionerResource(ConfigurableResource):
    """The provisioner with the catalogue of instance types this cluster offers (docs/provisioner.md)."""

    catalogue: str = Field(
        default="", description="Instance-type catalogue YAML; empty: deploy/instances.yaml"
    )

    def create_resource(self, context: InitResourceContext) -> NodeProvisioner:
        return NodeProvisioner(catalogue=self.catalogue)
