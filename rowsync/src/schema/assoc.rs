//! `Assoc<T>`: an association that may or may not be loaded, and typed access to it.

use super::{AssocDef, Schema};

/// An association field: [`Assoc::NotLoaded`] until preloaded, like Ecto's `NotLoaded`.
/// Sync and routing skip what is not loaded.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Assoc<T> {
    /// Not preloaded.
    #[default]
    NotLoaded,
    /// Preloaded: `Vec<_>` for many, `Option<_>`/`Option<Box<_>>` for one.
    Loaded(T),
}

impl<T> Assoc<T> {
    /// Whether the association was preloaded.
    pub fn is_loaded(&self) -> bool {
        matches!(self, Assoc::Loaded(_))
    }

    /// The loaded value, if any.
    pub fn loaded(&self) -> Option<&T> {
        match self {
            Assoc::Loaded(v) => Some(v),
            Assoc::NotLoaded => None,
        }
    }

    /// The loaded value, mutably, if any.
    pub fn loaded_mut(&mut self) -> Option<&mut T> {
        match self {
            Assoc::Loaded(v) => Some(v),
            Assoc::NotLoaded => None,
        }
    }

    /// The loaded value, if any, by value.
    pub fn into_loaded(self) -> Option<T> {
        match self {
            Assoc::Loaded(v) => Some(v),
            Assoc::NotLoaded => None,
        }
    }
}

/// A container an association can be loaded into: `Vec<C>` (many), `Option<C>` or
/// `Option<Box<C>>` (one).
pub trait AssocValue<C>: Send + Sync + 'static {
    /// Builds the container from the related rows, in order (a "one" keeps the first).
    fn from_rows(rows: Vec<C>) -> Self;
    /// The rows held.
    fn rows(&self) -> Vec<&C>;
    /// The rows held, mutably.
    fn rows_mut(&mut self) -> Vec<&mut C>;
    /// Moves the rows out, leaving the container empty (put them back with `from_rows`).
    fn take_rows(&mut self) -> Vec<C>;
    /// The position of the first row `pred` accepts. Sync asks this of every held list
    /// before taking it apart, so it must not allocate.
    fn position(&self, pred: impl FnMut(&C) -> bool) -> Option<usize>
    where
        Self: Sized;
}

impl<C: Send + Sync + 'static> AssocValue<C> for Vec<C> {
    fn from_rows(rows: Vec<C>) -> Self {
        rows
    }
    fn rows(&self) -> Vec<&C> {
        self.iter().collect()
    }
    fn rows_mut(&mut self) -> Vec<&mut C> {
        self.iter_mut().collect()
    }
    fn take_rows(&mut self) -> Vec<C> {
        std::mem::take(self)
    }
    fn position(&self, pred: impl FnMut(&C) -> bool) -> Option<usize> {
        self.iter().position(pred)
    }
}

impl<C: Send + Sync + 'static> AssocValue<C> for Option<C> {
    fn from_rows(rows: Vec<C>) -> Self {
        rows.into_iter().next()
    }
    fn rows(&self) -> Vec<&C> {
        self.iter().collect()
    }
    fn rows_mut(&mut self) -> Vec<&mut C> {
        self.iter_mut().collect()
    }
    fn take_rows(&mut self) -> Vec<C> {
        self.take().into_iter().collect()
    }
    fn position(&self, pred: impl FnMut(&C) -> bool) -> Option<usize> {
        self.iter().position(pred)
    }
}

impl<C: Send + Sync + 'static> AssocValue<C> for Option<Box<C>> {
    fn from_rows(rows: Vec<C>) -> Self {
        rows.into_iter().next().map(Box::new)
    }
    fn rows(&self) -> Vec<&C> {
        self.iter().map(|b| &**b).collect()
    }
    fn rows_mut(&mut self) -> Vec<&mut C> {
        self.iter_mut().map(|b| &mut **b).collect()
    }
    fn take_rows(&mut self) -> Vec<C> {
        self.take().map(|b| *b).into_iter().collect()
    }
    fn position(&self, pred: impl FnMut(&C) -> bool) -> Option<usize> {
        self.iter().map(|b| &**b).position(pred)
    }
}

/// Typed access to one association field of `P` holding a `T`.
pub struct AssocField<P, T> {
    /// Reads the field.
    pub get: fn(&P) -> &Assoc<T>,
    /// Writes the field.
    pub get_mut: fn(&mut P) -> &mut Assoc<T>,
}

/// Receives typed access to an association of `P`: the related schema `C` and the field's
/// container `T`. This is how runtime code (preload, sync) reaches fields generically while
/// the derive generates only a `match` of accessors.
pub trait AssocVisitor<P: Schema> {
    /// What the visit produces.
    type Output;
    /// Called with the association's metadata and field accessors.
    fn visit<C: Schema, T: AssocValue<C>>(
        self,
        def: &'static AssocDef,
        field: AssocField<P, T>,
    ) -> Self::Output;
}
