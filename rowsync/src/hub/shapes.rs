//! One form per query for every subscription made with it: subscriptions of one query differ
//! only in which rows they hold (a live `get(id)`'s key), so the rest — preload tree, paths,
//! query spec, access context — is kept once per hub, not once per subscription.
//!
//! why: a hub with 100,000 live values of one query kept 100,000 equal copies of it, several
//! hundred bytes each (a preload tree, the query's preload strings, ...).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::graph::{PreloadTree, ShapePaths};
use crate::load::{Access, QuerySpec};
use crate::route::Topic;
use crate::schema::SchemaMeta;

/// What every subscription of one query shares: the data shape it holds and what a reload
/// reads, all but which rows belong.
pub(crate) struct Form {
    pub root: &'static SchemaMeta,
    pub tree: PreloadTree,
    pub paths: Arc<ShapePaths>,
    /// What a reload reads (filters, order, preloads), for a query membership.
    pub spec: QuerySpec,
    /// Whether the data holds at most one row of a query (`one()`).
    pub single: bool,
    /// Who is asking: every read serving this data runs under it.
    pub access: Option<Access>,
    /// Every change of the tables policies read, for a context with a role or settings.
    pub policy_topics: Vec<Topic>,
}

impl Form {
    /// Everything that tells two forms apart: equal texts, equal forms. The context by its
    /// full key, as its `Debug` hides setting values (two tenants must never share a form).
    fn identity(&self) -> String {
        format!(
            "{}|{:?}|{:?}|{}|{}|{:?}",
            self.root.name,
            self.tree,
            self.spec,
            self.single,
            self.access.as_ref().map(Access::key).unwrap_or_default(),
            self.policy_topics
        )
    }
}

/// The forms in use, by a hash of their identity, held weakly: a form goes with the last
/// subscription of its query.
#[derive(Default)]
pub(crate) struct Forms {
    inner: Mutex<Interned>,
}

#[derive(Default)]
struct Interned {
    forms: HashMap<u128, Weak<Form>>,
    /// Entries after the last sweep of forms gone: the next sweep runs when they double.
    swept: usize,
}

impl Forms {
    /// The form equal to `form` already in use, or `form`, kept for the next ones.
    pub fn intern(&self, form: Form) -> Arc<Form> {
        let identity = form.identity();
        let key = hash128(&identity);
        let mut interned = self.inner.lock();
        if let Some(found) = interned.forms.get(&key).and_then(Weak::upgrade) {
            // why compared again: equal hashes of different forms must never share
            if found.identity() == identity {
                return found;
            }
        }
        let form = Arc::new(form);
        interned.forms.insert(key, Arc::downgrade(&form));
        if interned.forms.len() > 2 * interned.swept.max(64) {
            interned.forms.retain(|_, form| form.strong_count() > 0);
            interned.swept = interned.forms.len();
        }
        form
    }
}

/// A 128-bit hash of `text` (two 64-bit hashes, apart): a key small where the text is not.
pub(crate) fn hash128(text: &str) -> u128 {
    let half = |salt: u8| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut hasher);
        text.hash(&mut hasher);
        hasher.finish() as u128
    };
    half(1) << 64 | half(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_subscription_keeps_inline() {
        // what a subscription costs beside the index (BENCHMARKS.md breaks memory down by
        // these)
        let sizes = [
            (
                "subscription",
                std::mem::size_of::<super::super::Subscription>(),
            ),
            ("shape", std::mem::size_of::<super::super::Shape>()),
            ("form", std::mem::size_of::<Form>()),
            ("versions", std::mem::size_of::<crate::sync::Versions>()),
            ("snapshot", std::mem::size_of::<crate::load::Snapshot>()),
            ("notify", std::mem::size_of::<tokio::sync::Notify>()),
            ("async mutex", std::mem::size_of::<tokio::sync::Mutex<()>>()),
            (
                "watch",
                std::mem::size_of::<tokio::sync::watch::Sender<u64>>(),
            ),
            ("key", std::mem::size_of::<crate::schema::Key>()),
            ("value", std::mem::size_of::<crate::schema::Value>()),
            ("options", std::mem::size_of::<crate::sync::SyncOptions>()),
            ("stats", std::mem::size_of::<super::super::SyncStats>()),
        ];
        eprintln!("{sizes:?}");
        assert_eq!(sizes[1].1, 40, "a form's Arc and the membership");
    }
}
