//! The listener: notifications, reconnects.
