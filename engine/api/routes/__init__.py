"""The control API's routes, one module per resource. Importing the package registers every
route on the one table, :data:`engine.api.endpoints.router`."""

from engine.api.routes import (
    agents,
    billing,
    callbacks,
    calls,
    compliance,
    controls,
    events,
    ivr_menus,
    providers,
    routing,
    service,
    tenant,
    transfers,
    webhooks,
)

__all__ = [
    "agents",
    "billing",
    "callbacks",
    "calls",
    "compliance",
    "controls",
    "events",
    "ivr_menus",
    "providers",
    "routing",
    "service",
    "tenant",
    "transfers",
    "webhooks",
]
