"""Storage policy core: pure functions over numpy arrays, no I/O.

`placement` (weighted rendezvous / straw2 replica placement over failure domains), `rebalance`
(the moves a device set change implies), `extents` (contiguous-first extent allocation),
`provisioning` (thin provisioning and over-subscription) and `tiering` (cold volumes to slower
classes). The `dir` backend in `poolvisor.storage` and the benchmark build on these.
"""
