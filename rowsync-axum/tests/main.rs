//! rowsync-axum's tests, one binary: the events a connection gets (no browser), and the
//! board demo in a real headless Chromium.

mod browser;
mod events;
mod support;
