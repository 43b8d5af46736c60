//! Where changes come from. Every source yields the same [`Change`]; today the generated
//! triggers with LISTEN/NOTIFY, later logical replication.

mod change;
pub mod payload;
pub mod plan;

pub use change::{Change, Op};
pub use payload::{Decoded, PayloadError};
pub use plan::{CapturePlan, TablePlan};
pub mod listen;
pub mod replication;
pub mod triggers;
