"""The process-data flywheel: record every call scrubbed (``process_log``), measure it (``roi``), find recurring
work (``clustering``), and hand it to a model (``dataset``).

The functions a user calls are re-exported here: ``flywheel.report``, ``flywheel.clusters``, ``flywheel.export``.
"""

from .clustering import CandidateRule, Cluster, ClusterReport, cluster_tasks, clusters, task_text
from .dataset import ExportResult, export, write_dataset
from .roi import Report, Stats, build_report, percentile, report
from .tasks import Row, Task, group_tasks, load_rows

__all__ = [
    "CandidateRule", "Cluster", "ClusterReport", "ExportResult", "Report", "Row", "Stats", "Task", "build_report",
    "cluster_tasks", "clusters", "export", "group_tasks", "load_rows", "percentile", "report", "task_text",
    "write_dataset",
]
