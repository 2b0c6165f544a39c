"""Imports every check module so that each registers its checks (see registry.load_all)."""

from harness.checks import (  # noqa: F401
    acceptance,
    backend_load,
    broadcast,
    convergence,
    data_isolation,
    degradation,
    error_specificity,
    failure_visibility,
    heartbeats,
    lww,
    presence,
    resources,
    shutdown,
    slow_clients,
    streams,
    survival,
    tenant_isolation,
    wire,
    writes,
)
