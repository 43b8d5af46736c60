//! The derive macros of rowsync. Use them through `rowsync` (`rowsync::Schema`,
//! `rowsync::TextEnum`), which documents them.
//!
//! Layout (after serde_derive): `attr.rs` parses `#[rowsync(...)]` attributes with spans,
//! `ast.rs` turns a struct into a checked model collecting every error, `expand.rs` generates
//! the impl (`column_type.rs`: the per-column trait that makes a field of an unsupported type
//! one error naming the column), `text_enum.rs` handles text-backed enums. Logic lives in the
//! runtime crate; the generated code is metadata, a decoder and field accessors.

mod ast;
mod attr;
mod case;
mod column_type;
mod ctxt;
mod expand;
mod text_enum;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

// why the empty first line: `rowsync` shows this paragraph after its own documentation of the
// re-export, and it must not run on from that text's last paragraph.
///
/// `rowsync` re-exports this derive as `rowsync::Schema` and documents its attributes there;
/// depend on `rowsync` alone.
#[proc_macro_derive(Schema, attributes(rowsync))]
pub fn derive_schema(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive_schema(&input).into()
}

// why the empty first line: as for `Schema` above.
///
/// `rowsync` re-exports this derive as `rowsync::TextEnum` and documents it there; depend on
/// `rowsync` alone.
#[proc_macro_derive(TextEnum, attributes(rowsync))]
pub fn derive_text_enum(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    text_enum::derive(&input).into()
}
