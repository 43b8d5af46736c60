//! 32-bit transaction ids from the stream → the 64-bit ids `pg_current_xact_id()` returns.
//!
//! pgoutput's Begin carries the 32-bit xid; `Change::xid` is the full id (epoch in the high
//! 32 bits), because live queries compare it with `pg_current_snapshot()`, which is 64-bit.
//!
//! why "nearest to a reference": PostgreSQL keeps every xid still in use within 2^31 of the
//! next one (that is what wraparound protection guarantees), so the full id of a streamed
//! xid is the one with those low 32 bits nearest to a recent full id. The reference starts
//! at the server's next xid (read when a session opens) and follows the ids seen since, so
//! it stays recent however long the hub runs.

/// Widens streamed xids against a recent full xid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct XidWidener {
    reference: u64,
}

impl XidWidener {
    /// A widener near `reference`, a full xid the server handed out recently (e.g.
    /// `pg_snapshot_xmax(pg_current_snapshot())`).
    pub fn new(reference: u64) -> XidWidener {
        XidWidener { reference }
    }

    /// Moves the reference to a newer full xid read from the server (never backwards).
    pub fn refresh(&mut self, reference: u64) {
        self.reference = self.reference.max(reference);
    }

    /// The full xid whose low 32 bits are `xid`, nearest to the reference; the reference
    /// then follows it forward.
    pub fn widen(&mut self, xid: u32) -> u64 {
        let full = nearest(self.reference, xid);
        self.reference = self.reference.max(full);
        full
    }
}

/// The 64-bit id with low bits `xid` nearest to `reference` (never below epoch 0).
fn nearest(reference: u64, xid: u32) -> u64 {
    // why wrapping: the signed distance from the reference's low bits, in (-2^31, 2^31]
    let delta = i64::from(xid.wrapping_sub(reference as u32) as i32);
    match reference.checked_add_signed(delta) {
        Some(full) => full,
        // below epoch 0 cannot be: the xid is of epoch 0, above the reference
        None => u64::from(xid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH: u64 = 1 << 32;

    #[test]
    fn an_xid_of_the_reference_epoch_keeps_it() {
        let mut w = XidWidener::new(5 * EPOCH + 1000);
        assert_eq!(w.widen(990), 5 * EPOCH + 990);
        assert_eq!(w.widen(1200), 5 * EPOCH + 1200);
    }

    #[test]
    fn an_older_xid_across_the_wrap_takes_the_previous_epoch() {
        // the reference just wrapped into epoch 5; a transaction from before the wrap commits
        let mut w = XidWidener::new(5 * EPOCH + 10);
        assert_eq!(w.widen(u32::MAX - 5), 4 * EPOCH + u64::from(u32::MAX - 5));
        // and the reference did not move back
        assert_eq!(w.widen(11), 5 * EPOCH + 11);
    }

    #[test]
    fn a_newer_xid_across_the_wrap_takes_the_next_epoch() {
        let mut w = XidWidener::new(4 * EPOCH + u64::from(u32::MAX) - 3);
        assert_eq!(w.widen(7), 5 * EPOCH + 7);
        // the reference followed: an xid just before the wrap is still of epoch 4
        assert_eq!(w.widen(u32::MAX - 1), 4 * EPOCH + u64::from(u32::MAX - 1));
    }

    #[test]
    fn epoch_zero_never_goes_negative() {
        let mut w = XidWidener::new(100);
        assert_eq!(w.widen(3), 3);
        assert_eq!(w.widen(u32::MAX), u64::from(u32::MAX));
    }

    #[test]
    fn the_reference_follows_a_long_run_of_xids() {
        // many epochs of xids, seen 1e9 apart: each widens into the right epoch
        let mut w = XidWidener::new(0);
        let mut full = 0u64;
        for _ in 0..20 {
            full += 1_000_000_000;
            assert_eq!(w.widen(full as u32), full);
        }
    }

    #[test]
    fn refresh_never_moves_back() {
        let mut w = XidWidener::new(3 * EPOCH);
        w.refresh(2 * EPOCH);
        assert_eq!(w.widen(5), 3 * EPOCH + 5);
    }
}
