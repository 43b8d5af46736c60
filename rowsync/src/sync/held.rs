//! The shapes of held data sync works on: a row, `Option`, `Box`, `Vec`.

use crate::schema::{Key, Schema};

/// Data holding rows of `S` at the top level.
pub trait Held<S: Schema>: Send {
    /// The rows held.
    fn rows(&self) -> Vec<&S>;
    /// The rows held, mutably.
    fn rows_mut(&mut self) -> Vec<&mut S>;
    /// How many rows are held.
    fn held_count(&self) -> usize {
        self.rows().len()
    }
    /// The row at position `i`.
    fn row_at(&self, i: usize) -> Option<&S> {
        self.rows().get(i).copied()
    }
    /// The rows at positions `at` (ascending, distinct), mutably, with their positions.
    fn rows_at_mut(&mut self, at: &[usize]) -> Vec<(usize, &mut S)> {
        self.rows_mut()
            .into_iter()
            .enumerate()
            .filter(|(i, _)| at.binary_search(i).is_ok())
            .collect()
    }
    /// Removes the rows with `key`; returns them (a plain `S` cannot lose its row).
    fn remove_key(&mut self, key: &Key) -> Vec<S>;
    /// Whether rows can be added (lists, and an empty `Option`).
    fn can_add(&self) -> bool {
        false
    }
    /// Adds a row that started to belong; returns whether it was added.
    fn add(&mut self, row: S) -> bool;
    /// Replaces everything held (after a reload), keeping what a plain `S` needs.
    fn replace_all(&mut self, rows: Vec<S>);
    /// Moves the row with `key` to where a query ordered by `order_by` (then primary key)
    /// would put it, after an update changed its key or an order column.
    fn reposition(&mut self, key: &Key, order_by: &[crate::schema::OrderBy]) {
        let _ = (key, order_by);
    }
    /// Adds a row where a query ordered by `order_by` (then primary key) would put it.
    fn add_ordered(&mut self, row: S, order_by: &[crate::schema::OrderBy]) -> bool {
        let _ = order_by;
        self.add(row)
    }
}

impl<S: Schema> Held<S> for S {
    fn rows(&self) -> Vec<&S> {
        vec![self]
    }
    fn rows_mut(&mut self) -> Vec<&mut S> {
        vec![self]
    }
    fn remove_key(&mut self, _: &Key) -> Vec<S> {
        Vec::new()
    }
    fn add(&mut self, _: S) -> bool {
        false
    }
    fn replace_all(&mut self, rows: Vec<S>) {
        if let Some(row) = rows.into_iter().next() {
            *self = row;
        }
    }
}

impl<S: Schema> Held<S> for Option<S> {
    fn rows(&self) -> Vec<&S> {
        self.iter().collect()
    }
    fn rows_mut(&mut self) -> Vec<&mut S> {
        self.iter_mut().collect()
    }
    fn remove_key(&mut self, key: &Key) -> Vec<S> {
        if self.as_ref().is_some_and(|r| &r.primary_key() == key) {
            self.take().into_iter().collect()
        } else {
            Vec::new()
        }
    }
    fn can_add(&self) -> bool {
        self.is_none()
    }
    fn add(&mut self, row: S) -> bool {
        if self.is_some() {
            return false;
        }
        *self = Some(row);
        true
    }
    fn replace_all(&mut self, rows: Vec<S>) {
        *self = rows.into_iter().next();
    }
}

impl<S: Schema> Held<S> for Box<S> {
    fn rows(&self) -> Vec<&S> {
        vec![&**self]
    }
    fn rows_mut(&mut self) -> Vec<&mut S> {
        vec![&mut **self]
    }
    fn remove_key(&mut self, _: &Key) -> Vec<S> {
        Vec::new()
    }
    fn add(&mut self, _: S) -> bool {
        false
    }
    fn replace_all(&mut self, rows: Vec<S>) {
        if let Some(row) = rows.into_iter().next() {
            **self = row;
        }
    }
}

impl<S: Schema> Held<S> for Vec<S> {
    fn rows(&self) -> Vec<&S> {
        self.iter().collect()
    }
    fn held_count(&self) -> usize {
        self.len()
    }
    fn row_at(&self, i: usize) -> Option<&S> {
        self.get(i)
    }
    fn rows_at_mut(&mut self, at: &[usize]) -> Vec<(usize, &mut S)> {
        // why split: each row reached directly, not by walking the list to it
        let mut out = Vec::with_capacity(at.len());
        let mut rest: &mut [S] = self.as_mut_slice();
        let mut offset = 0;
        for &i in at {
            if i < offset || i - offset >= rest.len() {
                continue;
            }
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(i - offset);
            let Some((row, after)) = tail.split_first_mut() else {
                break;
            };
            out.push((i, row));
            rest = after;
            offset = i + 1;
        }
        out
    }
    fn rows_mut(&mut self) -> Vec<&mut S> {
        self.iter_mut().collect()
    }
    fn remove_key(&mut self, key: &Key) -> Vec<S> {
        let mut removed = Vec::new();
        let mut i = 0;
        while i < self.len() {
            if &self[i].primary_key() == key {
                removed.push(self.remove(i));
            } else {
                i += 1;
            }
        }
        removed
    }
    fn can_add(&self) -> bool {
        true
    }
    fn add(&mut self, row: S) -> bool {
        let key = row.primary_key();
        if self.iter().any(|r| r.primary_key() == key) {
            return false;
        }
        self.push(row);
        true
    }
    fn replace_all(&mut self, rows: Vec<S>) {
        *self = rows;
    }
    fn add_ordered(&mut self, row: S, order_by: &[crate::schema::OrderBy]) -> bool {
        let key = row.primary_key();
        if self.iter().any(|r| r.primary_key() == key) {
            return false;
        }
        super::order::insert_ordered(self, row, order_by);
        true
    }
    fn reposition(&mut self, key: &Key, order_by: &[crate::schema::OrderBy]) {
        if let Some(at) = self.iter().position(|r| r.has_key(key)) {
            super::order::reposition(self, at, order_by);
        }
    }
}
