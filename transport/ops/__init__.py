"""transport.ops: the operator's view of a live server, one inspection layer for every tool.

The functions here (from :mod:`transport.ops._inspect`) return plain data about
processes, the supervision tree, sockets, topics, PubSub and Presence. The debug shell
prints it, :class:`Metrics` exports it to Prometheus, the dashboard
(:mod:`transport.ops._dashboard`) shows it live. See docs/observability.md.
"""

from ._dashboard import DEFAULT_DASHBOARD_ADDRESS, Dashboard, DashboardChannel, DashboardSocket
from ._inspect import *  # noqa: F403 - the inspection layer is this package's API
from ._inspect import __all__ as _inspect_all
from ._looplag import LoopLag, percentile
from ._metrics import DEFAULT_METRICS_ADDRESS, Metrics, MetricsServer, mount_wsgi, parse_listen_address

__all__ = [
    *_inspect_all,
    "DEFAULT_DASHBOARD_ADDRESS",
    "DEFAULT_METRICS_ADDRESS",
    "Dashboard",
    "DashboardChannel",
    "DashboardSocket",
    "LoopLag",
    "Metrics",
    "MetricsServer",
    "mount_wsgi",
    "parse_listen_address",
    "percentile",
]
