//! Capture by triggers: installed SQL, payloads, naming.
