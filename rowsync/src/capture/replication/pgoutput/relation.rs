//! Relation messages, and the cache a consumer keeps of them.
//!
//! Insert, Update, Delete and Truncate name their table by oid only; the columns come in a
//! Relation message sent earlier in the session (before the table's first change, and again
//! whenever the server has forgotten sending it: after `ALTER TABLE` or `TRUNCATE`, in each
//! streamed transaction). A consumer keeps the latest Relation per oid and reads each tuple
//! against it.

use std::borrow::Cow;

use super::error::DecodeError;
use super::ids::{Oid, Xid};
use super::tuple::{ColumnValue, TupleData};

/// A table's replica identity: which old values Update and Delete carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaIdentity {
    /// `d`: the primary key (old key tuple `K` when it changes, and on delete).
    Default,
    /// `n`: nothing (updates and deletes cannot be published).
    Nothing,
    /// `f`: every column (old tuple `O`).
    Full,
    /// `i`: the columns of a chosen unique index (old key tuple `K`).
    Index,
}

/// `R`: a table's columns. Tuples of later changes to the table list their values in this
/// order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation<'a> {
    /// The (sub)transaction the message belongs to: protocol v2+, inside a stream only.
    pub xid: Option<Xid>,
    /// The table's oid: what Insert, Update, Delete and Truncate name it by.
    pub oid: Oid,
    /// The schema (`pg_catalog` when the server sent the empty string it uses for it).
    pub namespace: Cow<'a, str>,
    /// The table's name.
    pub name: Cow<'a, str>,
    /// Which old values updates and deletes carry.
    pub replica_identity: ReplicaIdentity,
    /// The published columns, in tuple order (dropped and generated columns are not sent).
    pub columns: Vec<Column<'a>>,
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column<'a> {
    /// Bit 0 set: the column is part of the replica identity key.
    pub flags: u8,
    /// The column's name.
    pub name: Cow<'a, str>,
    /// The column type's oid.
    pub type_oid: Oid,
    /// The type modifier (`atttypmod`; -1 when there is none).
    pub type_modifier: i32,
}

impl Column<'_> {
    /// `true` when the column is part of the replica identity key (every column, for `FULL`).
    pub fn is_key(&self) -> bool {
        self.flags & 1 != 0
    }

    /// The same column, owning its name.
    pub fn into_owned(self) -> Column<'static> {
        Column {
            flags: self.flags,
            name: Cow::Owned(self.name.into_owned()),
            type_oid: self.type_oid,
            type_modifier: self.type_modifier,
        }
    }
}

impl<'a> Relation<'a> {
    /// The same relation, owning its names: what a cache keeps across messages.
    pub fn into_owned(self) -> Relation<'static> {
        Relation {
            xid: self.xid,
            oid: self.oid,
            namespace: Cow::Owned(self.namespace.into_owned()),
            name: Cow::Owned(self.name.into_owned()),
            replica_identity: self.replica_identity,
            columns: self.columns.into_iter().map(Column::into_owned).collect(),
        }
    }

    /// The replica identity key columns.
    pub fn key_columns(&self) -> impl Iterator<Item = &Column<'a>> {
        self.columns.iter().filter(|c| c.is_key())
    }

    /// Pairs each column with its value in `tuple`, which must be a tuple of this relation.
    ///
    /// # Errors
    ///
    /// [`DecodeError::ColumnCountMismatch`] when the tuple's column count differs (the
    /// Relation message held is not the one the tuple was written with).
    pub fn values<'t, 'v>(
        &'t self,
        tuple: &'t TupleData<'v>,
    ) -> Result<impl Iterator<Item = (&'t Column<'a>, &'t ColumnValue<'v>)>, DecodeError> {
        if tuple.columns.len() != self.columns.len() {
            return Err(DecodeError::ColumnCountMismatch {
                relation_oid: self.oid,
                expected: self.columns.len(),
                found: tuple.columns.len(),
            });
        }
        Ok(self.columns.iter().zip(&tuple.columns))
    }
}
