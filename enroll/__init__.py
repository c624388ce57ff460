"""Enrollment: quality gates, aggregation, and the ``enroll-speaker`` command."""

from .errors import EnrollmentError
from .pipeline import EnrollResult, enroll_speaker

__all__ = ["EnrollResult", "EnrollmentError", "enroll_speaker"]
