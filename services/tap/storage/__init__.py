"""Storage of the TAP service: jobs and query history in the platform state database,
job results and stored uploads as files."""

from .files import ResultFiles
from .history import HistoryStore
from .jobs import JobStore

__all__ = ["HistoryStore", "JobStore", "ResultFiles"]
