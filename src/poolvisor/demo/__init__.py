"""Demo data for `poolvisor serve --demo`: a cluster (cluster.py) and VMs with recorded CPU use
(usage.py), both built through the public services only."""
