//! The latest relation description of each table, kept from the stream.

use std::collections::HashMap;

use super::ids::Oid;
use super::message::PgOutputMessage;
use super::relation::Relation;

/// The latest [`Relation`] of each table, by oid: what a consumer needs to read tuples.
///
/// Pure bookkeeping: feed it every decoded message with [`observe`](Self::observe) (it keeps
/// Relation messages and ignores the rest) and look tables up by the oid a change names.
/// Relation messages inside a stream are kept too: pgoutput sends a table's Relation again in
/// any later transaction that needs it, so the latest one seen is always the one to use.
#[derive(Debug, Clone, Default)]
pub struct RelationCache {
    relations: HashMap<Oid, Relation<'static>>,
}

impl RelationCache {
    /// An empty cache (a new replication session starts with one: the server resends every
    /// Relation it needs).
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `message` if it is a Relation; returns whether it was.
    pub fn observe(&mut self, message: &PgOutputMessage<'_>) -> bool {
        match message {
            PgOutputMessage::Relation(relation) => {
                self.insert(relation.clone());
                true
            }
            _ => false,
        }
    }

    /// Keeps `relation`, replacing the one held for its oid (returned).
    pub fn insert(&mut self, relation: Relation<'_>) -> Option<Relation<'static>> {
        let relation = relation.into_owned();
        self.relations.insert(relation.oid, relation)
    }

    /// The relation held for `oid`.
    pub fn get(&self, oid: Oid) -> Option<&Relation<'static>> {
        self.relations.get(&oid)
    }

    /// Forgets the relation held for `oid`.
    pub fn remove(&mut self, oid: Oid) -> Option<Relation<'static>> {
        self.relations.remove(&oid)
    }

    /// How many relations are held.
    pub fn len(&self) -> usize {
        self.relations.len()
    }

    /// `true` when none is held.
    pub fn is_empty(&self) -> bool {
        self.relations.is_empty()
    }
}
