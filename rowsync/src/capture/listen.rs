//! The listener: one connection LISTENing for change payloads.
