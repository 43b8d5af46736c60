//! The SQL capture installs: one trigger function and one row trigger per watched table.
