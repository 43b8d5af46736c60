//! Where changes come from. Every source yields the same [`Change`]; today the generated
//! triggers with LISTEN/NOTIFY, later logical replication.

pub mod payload;
pub mod plan;

pub use payload::{Decoded, PayloadError};
pub use plan::{CapturePlan, TablePlan};
pub mod listen;
pub mod triggers;
