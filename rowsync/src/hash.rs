//! The hash maps of the change path (cache, routing, sync): std's maps with foldhash's
//! hasher.
//!
//! why not std's SipHash: hashing keys was ~8% of the CPU a drain of 30,000 changes took
//! (profiled: the front map's look-ups and offers, prefetch's batches, the held-list index);
//! foldhash hashes these short keys several times faster. why foldhash: it is the hasher
//! hashbrown itself defaults to, seeded per process (minimally DoS-resistant, as keys come
//! from the database and notifications), and has no dependencies.

pub(crate) use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
