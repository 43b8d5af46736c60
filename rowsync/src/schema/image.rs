//! A row image: one row's column values in its schema's column order, whatever Rust type
//! will hold it.
//!
//! why: the hub reads a changed row once and hands it to every subscriber, and a capture
//! source (a replication stream) can deliver the row itself; neither knows the Rust types
//! that hold the row. Each holder decodes its own struct from the shared image.

use std::sync::Arc;

use super::{RowSource, Schema, SchemaMeta, Value};
use crate::error::DecodeError;

/// One row's values, in the order of [`SchemaMeta::columns`] of the schema mapping its table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RowImage {
    pub values: Box<[Value]>,
}

impl RowImage {
    /// The image of `values` (one per column of the schema).
    pub fn new(values: Vec<Value>) -> RowImage {
        RowImage {
            values: values.into_boxed_slice(),
        }
    }

    /// Decodes the image into a row of `S` (its associations not loaded).
    pub fn decode<S: Schema>(&self) -> Result<S, DecodeError> {
        S::from_row(&mut ImageSource(self))
    }

    /// The primary key, by `meta`'s key columns.
    pub fn key(&self, meta: &SchemaMeta) -> super::Key {
        super::Key(
            meta.primary_key
                .iter()
                .map(|&i| self.values.get(i).cloned().unwrap_or(Value::Null))
                .collect(),
        )
    }
}

/// A shared image (what the row cache hands out).
pub(crate) type SharedImage = Arc<RowImage>;

struct ImageSource<'a>(&'a RowImage);

impl RowSource for ImageSource<'_> {
    fn value(&mut self, index: usize) -> Result<Value, DecodeError> {
        self.0
            .values
            .get(index)
            .cloned()
            .ok_or(DecodeError::MissingColumn { index })
    }
}
