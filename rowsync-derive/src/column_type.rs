//! One trait per column, through which the generated code reaches the field's `FieldValue`.
//!
//! why: a field of a type rowsync cannot decode (`Vec<String>` for a `text[]` column) used to
//! fail as "`FieldValue` is not implemented" at four places in generated code. Going through a
//! trait of the column's own instead turns that into one error whose message names the field
//! and column and lists the supported types:
//! - `#[diagnostic::on_unimplemented]` on the column's trait carries the message;
//! - `#[diagnostic::do_not_recommend]` on its impl for every `T: FieldValue` makes rustc report
//!   the column's trait (not the `FieldValue` bound inside the impl, whose message could not
//!   name the column);
//! - every use is `<Type as Trait>::item` spanned at the field's type, so the uses produce the
//!   same diagnostic, which rustc prints once.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::Ident;

use crate::ast::Column;

/// What the error lists; keep it in step with the `FieldValue` impls in `rowsync`.
const SUPPORTED: &str = "a column field's type must be one of: i16, i32, i64, f32, f64, bool, \
    String, Vec<u8>, uuid::Uuid, chrono::NaiveDate, chrono::NaiveTime, chrono::NaiveDateTime, \
    chrono::DateTime<Utc>, serde_json::Value, rowsync::Decimal (the last seven with rowsync's \
    cargo features `uuid`, `chrono`, `json`, `decimal`, on by default), an enum deriving \
    rowsync::TextEnum, a type of your own implementing rowsync::FieldValue, or Option<T> of \
    one of them";

const SKIP: &str = "a field that is not a column takes `#[rowsync(skip)]` (it is then \
    `Default::default()` in every loaded row)";

/// The name of column `col`'s trait.
pub fn trait_name(col: &Column) -> Ident {
    // why this name: rustc shows it ("the trait `FieldValue_of_tags` is not implemented")
    format_ident!("FieldValue_of_{}", col.ident, span = Span::call_site())
}

/// The trait of column `col`, with its impl for every `FieldValue` type: the same items as
/// `FieldValue` (decoding through `decode_field`, so the error names the column).
pub fn define(owner: &Ident, col: &Column) -> TokenStream {
    let name = trait_name(col);
    let field = col.ident.to_string();
    let field = field.trim_start_matches("r#");
    let message = format!(
        "unsupported type `{{Self}}` for field `{field}` of `{owner}` (column `{}`)",
        escape(&col.name)
    );
    let label = "rowsync cannot decode a column into `{Self}`";
    quote! {
        #[diagnostic::on_unimplemented(message = #message, label = #label, note = #SUPPORTED, note = #SKIP)]
        #[allow(non_camel_case_types)]
        trait #name: ::core::marker::Sized {
            const SQL_TYPES: &'static [&'static str];
            fn decode(row: &mut dyn rs::RowSource, index: usize, table: &'static str, column: &'static str) -> ::core::result::Result<Self, rs::DecodeError>;
            fn to_value(&self) -> rs::Value;
            fn eq_value(&self, value: &rs::Value) -> bool;
        }
        #[diagnostic::do_not_recommend]
        impl<T: rs::FieldValue> #name for T {
            const SQL_TYPES: &'static [&'static str] = <T as rs::FieldValue>::SQL_TYPES;
            #[inline]
            fn decode(row: &mut dyn rs::RowSource, index: usize, table: &'static str, column: &'static str) -> ::core::result::Result<Self, rs::DecodeError> {
                rs::decode_field::<T>(row, index, table, column)
            }
            #[inline]
            fn to_value(&self) -> rs::Value {
                <T as rs::FieldValue>::to_value(self)
            }
            #[inline]
            fn eq_value(&self, value: &rs::Value) -> bool {
                <T as rs::FieldValue>::eq_value(self, value)
            }
        }
    }
}

/// `on_unimplemented` reads its strings as format strings: a `{` in a column name is literal.
fn escape(text: &str) -> String {
    text.replace('{', "{{").replace('}', "}}")
}
