"""batch stage: saved queries, the nightly batch, ad hoc lookups and the `nightly` pipeline.

Public front:
- `SavedQuery`, `add_query`, `update_query`, `remove_query`, `get_query`, `list_queries` (batch.queries)
- `run_batch(settings, alpha=0.0, progress=False) -> RunSummary`: score and publish one run (batch.run)
- `rank_users(factors, user_ids, candidates, ...)`: the vectorised scoring engine (batch.scoring)
- `show(settings, user_id, query=None)`; and, named like their modules, `batch.recommend.recommend`,
  `batch.report.report`, `batch.nightly.nightly`

Names resolve lazily (PEP 562) so that `import batch.cli` stays cheap for `movierec --help`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SavedQuery": "batch.queries",
    "add_query": "batch.queries",
    "update_query": "batch.queries",
    "remove_query": "batch.queries",
    "get_query": "batch.queries",
    "list_queries": "batch.queries",
    "run_batch": "batch.run",
    "RunSummary": "batch.run",
    "rank_users": "batch.scoring",
    "show": "batch.recommend",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'batch' has no attribute {name!r}")
