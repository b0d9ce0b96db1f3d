//! PR tracker.
