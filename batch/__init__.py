"""movierec.batch: saved queries, the nightly batch run and its publish, ad hoc lookups, run reports.

- saved queries: `SavedQuery`, `add_query`, `update_query`, `remove_query`, `get_query`, `list_queries`
- `run_batch(settings, alpha=None, progress=False) -> RunSummary`: score and publish one run (alpha None:
  `Settings.alpha`)
- `evaluate_lists(settings, query_file=None, cutoff=None, ...)`: the lists judged by what users did next
  (time split, baselines and blends; `movierec evaluate --lists`)
- `recommend(settings, user_id, text, ...)`: one user's list computed live, as the batch would;
  `show(settings, user_id, query=None)`: what the last run published; `report(settings, run_id=None)`
Ranking itself is the model contract's (`movierec.cf.Recommender.recommend`).
"""

from movierec.batch.evaluate import evaluate_lists
from movierec.batch.queries import (
    SavedQuery,
    add_query,
    get_query,
    list_queries,
    remove_query,
    update_query,
)
from movierec.batch.recommend import recommend, show
from movierec.batch.report import report
from movierec.batch.run import RunSummary, run_batch

__all__ = [
    "RunSummary",
    "SavedQuery",
    "add_query",
    "evaluate_lists",
    "get_query",
    "list_queries",
    "recommend",
    "remove_query",
    "report",
    "run_batch",
    "show",
    "update_query",
]
