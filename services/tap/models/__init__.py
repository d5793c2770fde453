"""Pydantic models of the TAP service: request parameters, UWS jobs, history entries, users."""

from .history import HistoryEntry, HistoryList
from .job import ACTIVE_PHASES, FINAL_PHASES, Job, Phase
from .params import TapParams, UploadSpec
from .user import User

__all__ = [
    "ACTIVE_PHASES",
    "FINAL_PHASES",
    "HistoryEntry",
    "HistoryList",
    "Job",
    "Phase",
    "TapParams",
    "UploadSpec",
    "User",
]
