//! `#[derive(TextEnum)]`: a unit-only enum stored as text or as a PostgreSQL enum.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Fields, LitStr};

use crate::case::snake_case;
use crate::ctxt::Ctxt;

pub fn derive(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::default();
    let ident = &input.ident;
    let mut variants = Vec::new();
    match &input.data {
        Data::Enum(e) => {
            for v in &e.variants {
                if !matches!(v.fields, Fields::Unit) {
                    cx.error(v, "`TextEnum` variants cannot hold data");
                    continue;
                }
                let mut label = snake_case(&v.ident.to_string());
                for attr in v.attrs.iter().filter(|a| a.path().is_ident("rowsync")) {
                    let r = attr.parse_nested_meta(|meta| {
                        if meta.path.is_ident("rename") {
                            label = meta.value()?.parse::<LitStr>()?.value();
                            Ok(())
                        } else {
                            Err(meta.error("unknown option; expected `rename = \"...\"`"))
                        }
                    });
                    if let Err(e) = r {
                        cx.push(e);
                    }
                }
                variants.push((&v.ident, label));
            }
        }
        _ => cx.error(input, "`#[derive(TextEnum)]` works on enums only"),
    }
    if let Err(e) = cx.finish() {
        return e.to_compile_error();
    }
    let name = ident.to_string();
    let decode = variants
        .iter()
        .map(|(v, label)| quote! { #label => ::core::result::Result::Ok(#ident::#v) });
    let encode = variants
        .iter()
        .map(|(v, label)| quote! { #ident::#v => #label })
        .collect::<Vec<_>>();
    quote! {
        const _: () = {
            use ::rowsync::__private as rs;
            impl rs::FieldValue for #ident {
                const SQL_TYPES: &'static [&'static str] = &["text", "varchar", "bpchar", "enum"];
                fn from_value(value: rs::Value) -> ::core::result::Result<Self, rs::DecodeError> {
                    match value {
                        rs::Value::Text(text) => match text.as_str() {
                            #(#decode,)*
                            _ => ::core::result::Result::Err(rs::DecodeError::UnknownVariant { enum_name: #name, value: text }),
                        },
                        rs::Value::Null => ::core::result::Result::Err(rs::DecodeError::UnexpectedNull),
                        other => ::core::result::Result::Err(rs::DecodeError::TypeMismatch { expected: "text (enum)", found: other.kind() }),
                    }
                }
                fn to_value(&self) -> rs::Value {
                    let label: &str = match self { #(#encode,)* };
                    rs::Value::Text(::std::string::String::from(label))
                }
                fn eq_value(&self, value: &rs::Value) -> bool {
                    let label: &str = match self { #(#encode,)* };
                    ::core::matches!(value, rs::Value::Text(text) if text == label)
                }
            }
        };
    }
}
