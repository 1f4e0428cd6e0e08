"""Which hosts hold members of a group, kept current from the index's change log.

ClusterState keeps one dense per-host count array per group, so listing a group's hosts is a pass
over all H hosts. The served path needs that list for every request in an anti-affinity or
domain-spread group (to count and exclude the hosts those filters reject), so the index keeps it
per group and brings it up to date from the hosts changed since the group was last looked at
(every change reaches the index through ClusterState's notifications, or `touch`). A group not
looked at for many changes, a replaced count array, or a rebuild of the index means one pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RESCAN_AFTER = 256  # changes since a group's last look beyond which one pass is cheaper
LOG_LIMIT = 8192  # changed hosts remembered (beyond it, only the newest LOG_LIMIT / 2 are kept)
MAX_GROUPS = 4096  # groups remembered (all forgotten beyond this)


class MemberHosts:
    def __init__(self) -> None:
        self._log: list[int] = []
        self._base = 0  # position of _log[0] among all changes seen
        # group -> (its count array, or None while it had none; member hosts; log position; the
        # state's group_counts dict when the entry was made)
        self._groups: dict[str, tuple[np.ndarray | None, set[int], int, object]] = {}
        self._by_domain: tuple[np.ndarray, np.ndarray] | None = None

    def reset(self) -> None:
        """Forget everything (the index was rebuilt: changes may have gone unlogged)."""
        self._log, self._base, self._groups, self._by_domain = [], 0, {}, None

    def changed(self, hosts: Sequence[int]) -> None:
        self._log.extend(hosts)
        if len(self._log) > LOG_LIMIT:  # keep the newest half (a bulk change may add many at once)
            drop = len(self._log) - LOG_LIMIT // 2
            del self._log[:drop]
            self._base += drop

    def absent(self, group: str, owner: object) -> None:
        """`group` has no members now (it is not in the state's group_counts, `owner`): every host
        that gets one is logged from here on, so the first look at its members needs no pass over
        all hosts (unless `owner` was replaced meanwhile, as ClusterState.recount does)."""
        if len(self._groups) >= MAX_GROUPS:
            self._groups.clear()
        self._groups[group] = (None, set(), self._base + len(self._log), owner)

    def hosts(self, group: str, counts: np.ndarray, n: int, owner: object = None) -> np.ndarray:
        """Indices of the hosts with counts > 0 among the first n (in no particular order);
        `owner` is the dict holding `counts` (see absent)."""
        end = self._base + len(self._log)
        entry = self._groups.get(group)
        if entry is not None and (entry[0] is counts or (entry[0] is None and owner is not None
                                                          and entry[3] is owner)) \
                and 0 <= end - entry[2] <= RESCAN_AFTER and entry[2] >= self._base:
            members = entry[1]
            for h in self._log[entry[2] - self._base:]:
                if counts[h] > 0:
                    members.add(h)
                else:
                    members.discard(h)
        else:
            if len(self._groups) >= MAX_GROUPS:
                self._groups.clear()
            members = set(np.flatnonzero(counts[:n] > 0).tolist())
        self._groups[group] = (counts, members, end, owner)
        return np.fromiter(members, dtype=np.int64, count=len(members))

    def in_domains(self, domains: np.ndarray, taken: np.ndarray) -> np.ndarray:
        """Hosts whose failure domain code is in `taken` (host domains are fixed until a rebuild)."""
        if self._by_domain is None:
            order = np.argsort(domains, kind="stable")
            starts = np.searchsorted(domains[order], np.arange(int(domains.max(initial=0)) + 2))
            self._by_domain = (order, starts)
        order, starts = self._by_domain
        parts = [order[starts[d]: starts[d + 1]] for d in taken.tolist() if d + 1 < starts.size]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
