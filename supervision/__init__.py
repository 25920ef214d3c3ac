"""supervision: OTP supervisors for greenphx's processes.

Put a tree in your service::

    from supervision import Application, DynamicSupervisor, PartitionSupervisor

    app = Application([
        Cache,                                                 # a GenServer subclass
        {"id": "db", "start": (db_start_link, ("dsn",)), "shutdown": 10_000},
        PartitionSupervisor.child_spec(name="ChannelPool"),
    ])
    app.start()
    ...
    app.stop()

See :mod:`supervision._supervisor` for the restart rules, and ``docs/supervision.md`` for
every option with its default.
"""

from ._application import Application
from ._child_spec import ChildSpec, ChildSpecError, child_spec
from ._dynamic import (
    DynamicSupervisor,
    PartitionSupervisor,
    partition_for,
    spawn_child,
    spawn_child_in_partition,
    start_child_in_partition,
)
from ._supervisor import (
    ChildInfo,
    Supervisor,
    SupervisorError,
    count_children,
    delete_child,
    restart_child,
    start_child,
    start_link,
    terminate_child,
    which_children,
)

__all__ = [
    "Application",
    "ChildInfo",
    "ChildSpec",
    "ChildSpecError",
    "DynamicSupervisor",
    "PartitionSupervisor",
    "Supervisor",
    "SupervisorError",
    "child_spec",
    "count_children",
    "delete_child",
    "partition_for",
    "restart_child",
    "spawn_child",
    "spawn_child_in_partition",
    "start_child",
    "start_child_in_partition",
    "start_link",
    "terminate_child",
    "which_children",
]
