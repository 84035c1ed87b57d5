"""Turns `size` independently started processes into one MPI intracommunicator.

No mpirun: each process does a singleton MPI_Init, rank 0 opens one port per joining
rank (so a rank can only connect when the group is ready for it), the port names travel
in ONE all-gather handed in by the caller (Spark's BarrierTaskContext.allGather in
production), then the ranks join one by one with Connect/Accept/Merge so that the
communicator's ranks equal the callers' ranks.
"""

from ..errors import ClusterError
from . import mpi as mpi_env

_SEP = "\n"  # MPICH port names hold no newline


def form_world(rank, size, all_gather, timeout=120.0, connection="ethernet"):
    """Return an intracommunicator of `size` ranks where this process has rank `rank`.

    `all_gather(message: str) -> list[str]` must return every rank's message in rank
    order. A peer that never connects makes the watchdog abort this process after
    `timeout` seconds with a message naming the rank.
    """
    if not 0 <= rank < size:
        raise ClusterError(f"rank {rank} is outside a cluster of size {size}")
    MPI = mpi_env.import_mpi(connection)
    if size == 1:
        return MPI.COMM_SELF.Dup()
    mine = [MPI.Open_port() for _ in range(size - 1)] if rank == 0 else []
    gathered = all_gather(_SEP.join(mine))
    if len(gathered) != size or not gathered[0]:
        raise ClusterError(f"rank {rank}: rendezvous got {len(gathered)} addresses for "
                           f"{size} ranks (rank 0's ports missing)")
    ports = [None] + gathered[0].split(_SEP)  # ports[k]: where rank k joins
    watchdog = mpi_env.Watchdog(rank, "MPI rendezvous")
    try:
        with watchdog.guard(timeout, f"MPI rendezvous (joining {size} ranks)"):
            world = _join(MPI, rank, size, ports)
    finally:
        watchdog.close()
    for port in mine:
        MPI.Close_port(port)
    if world.Get_rank() != rank or world.Get_size() != size:
        raise ClusterError(f"rank {rank}: rendezvous produced rank {world.Get_rank()} "
                           f"of {world.Get_size()}")
    return world


def _join(MPI, rank, size, ports):
    """Grow the group one rank at a time: the group accepts rank k while k connects."""
    group = MPI.COMM_SELF.Dup() if rank == 0 else None
    for newcomer in range(1, size):
        if rank < newcomer:
            inter = group.Accept(ports[newcomer], root=0)
            merged = inter.Merge(high=False)
        elif rank == newcomer:
            inter = MPI.COMM_SELF.Connect(ports[newcomer], root=0)
            merged = inter.Merge(high=True)
        else:
            continue
        inter.Free()
        if group is not None:
            group.Free()
        group = merged
    return group
