//! The derive macros of rowsync. Use them through `rowsync` (`rowsync::Schema`,
//! `rowsync::TextEnum`), which documents them.
//!
//! Layout (after serde_derive): `attr.rs` parses `#[rowsync(...)]` attributes with spans,
//! `ast.rs` turns a struct into a checked model collecting every error, `expand.rs` generates
//! the impl, `text_enum.rs` handles text-backed enums. Logic lives in the runtime crate; the
//! generated code is metadata, a decoder and field accessors.

mod ast;
mod attr;
mod case;
mod column_type;
mod ctxt;
mod expand;
mod text_enum;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Implements `rowsync::Schema` for a struct mapped to a table. See the `rowsync` docs.
#[proc_macro_derive(Schema, attributes(rowsync))]
pub fn derive_schema(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive_schema(&input).into()
}

/// Implements `rowsync::FieldValue` for a unit-only enum stored as text (or a PostgreSQL enum).
/// Variants map to their snake_case names unless `#[rowsync(rename = "...")]` says otherwise.
#[proc_macro_derive(TextEnum, attributes(rowsync))]
pub fn derive_text_enum(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    text_enum::derive(&input).into()
}
