"""Memory pooling policy core: pure functions over numpy arrays, no I/O.

`balloon` (how much memory each guest keeps when a host is under pressure, and when to give it
back) and `fragmentation` (free capacity stranded where no flavor fits, the largest flavor that
still fits). The memory service (services/memory.py) and the simulator (sim/memory.py) use both.
"""
