//! Identifiers and positions the messages carry: object and transaction ids, WAL positions,
//! server timestamps.

use std::fmt;

/// A PostgreSQL object id (relation or type).
pub type Oid = u32;

/// A PostgreSQL transaction id.
pub type Xid = u32;

/// A WAL position (`pg_lsn`); prints as PostgreSQL does, e.g. `16/B374D848`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// A server timestamp: microseconds since 2000-01-01 00:00:00 UTC, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PgTimestamp(pub i64);

#[cfg(feature = "chrono")]
impl PgTimestamp {
    /// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
    const UNIX_TO_PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

    /// The instant in UTC, or `None` when it is outside chrono's range (`chrono` feature).
    pub fn to_chrono(self) -> Option<chrono::DateTime<chrono::Utc>> {
        let micros = self.0.checked_add(Self::UNIX_TO_PG_EPOCH_MICROS)?;
        chrono::DateTime::from_timestamp_micros(micros)
    }
}
