"""The one package that talks to the MLflow model registry, one job per module:

- `registration`: new versions, with every lineage tag, or none at all;
- `reads`: versions, tags and aliases; `fetch`: a version's files, verified by sha256;
- `gates`: signed gate verdicts; `lock`, `audit`, `moves`: alias moves, compare-and-set
  under a lock, each with its audit record; `lineage`: compression parents;
- `retrain`: the retrain claim; `webhooks`: the alias webhook; `rollout_record`: the split;
- `tags`: every tag name, once; `failures`: what a failed MLflow call means for the user.

Callers use a `Registry` (built once from settings, then passed down); its methods carry
the same names as the jobs.
"""

from chassis.registry.audit import AliasChange, AuditRecord
from chassis.registry.client import Registry
from chassis.registry.fetch import VersionFiles
from chassis.registry.lock import RegistryLock, lock_ttl_seconds
from chassis.registry.registration import RegisteredVersion

__all__ = [
    "AliasChange",
    "AuditRecord",
    "RegisteredVersion",
    "Registry",
    "RegistryLock",
    "VersionFiles",
    "lock_ttl_seconds",
]
