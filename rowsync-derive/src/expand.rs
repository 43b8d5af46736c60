//! Generating the `Schema` impl from the checked model.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::DeriveInput;

use crate::ast::{Assoc, Container};
use crate::attr::{Cond, FilterValue, JoinThrough, Kind};
use crate::case::snake_case;
use crate::column_type;
use crate::ctxt::Ctxt;

pub fn derive_schema(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::default();
    let container = Container::from_ast(&cx, input);
    match (cx.finish(), container) {
        (Ok(()), Some(c)) => expand(&c),
        (Err(e), _) => fallback(input, e),
        (Ok(()), None) => TokenStream::new(),
    }
}

/// On error, the errors plus a stub impl, so one mistake does not cascade into
/// "`Person: Schema` is not satisfied" everywhere the type is used.
fn fallback(input: &DeriveInput, error: syn::Error) -> TokenStream {
    let ident = &input.ident;
    let errors = error.to_compile_error();
    if !input.generics.params.is_empty() {
        return errors;
    }
    quote! {
        #errors
        const _: () = {
            use ::rowsync::__private as rs;
            impl rs::Schema for #ident {
                fn meta() -> &'static rs::SchemaMeta { unimplemented!() }
                fn from_row(_: &mut dyn rs::RowSource) -> ::core::result::Result<Self, rs::DecodeError> { unimplemented!() }
                fn column_value(&self, _: usize) -> rs::Value { unimplemented!() }
                fn visit_assoc<V: rs::AssocVisitor<Self>>(_: usize, _: V) -> ::core::option::Option<V::Output> { unimplemented!() }
            }
        };
    }
}

fn expand(c: &Container) -> TokenStream {
    let ident = c.ident;
    let name = ident.to_string();
    let table = &c.table;
    let pg_schema = option_str(c.pg_schema.as_deref());
    let owner_snake = snake_case(&name);

    let column_defs = c.columns.iter().map(|col| {
        let column = &col.name;
        let field = col.ident.to_string();
        let ty = col.ty;
        let check = column_type::trait_name(col);
        let rust_type = quote!(#ty).to_string().replace(' ', "");
        quote_spanned! {ty.span()=>
            rs::ColumnDef {
                name: #column,
                field: #field,
                rust_type: #rust_type,
                sql_types: <#ty as #check>::SQL_TYPES,
            }
        }
    });
    let key_positions = c
        .columns
        .iter()
        .enumerate()
        .filter(|(_, col)| col.primary_key)
        .map(|(i, _)| i);

    // the key columns compared in place, in key order: sync asks every held row whether it
    // is the changed one, so this is the hottest comparison there is
    let key_eqs: Vec<TokenStream> = c
        .columns
        .iter()
        .filter(|col| col.primary_key)
        .enumerate()
        .map(|(k, col)| {
            let (field, ty, check) = (col.ident, col.ty, column_type::trait_name(col));
            quote_spanned! {ty.span()=> <#ty as #check>::eq_value(&self.#field, &key.0[#k]) }
        })
        .collect();
    let key_len = key_eqs.len();

    let mut helpers: Vec<TokenStream> = c
        .columns
        .iter()
        .map(|col| column_type::define(ident, col))
        .collect();

    let assoc_defs: Vec<TokenStream> = c
        .assocs
        .iter()
        .map(|a| assoc_def(c, a, &owner_snake, &mut helpers))
        .collect();

    let decode_fields = c.columns.iter().enumerate().map(|(i, col)| {
        let field = col.ident;
        let column = &col.name;
        let ty = col.ty;
        let check = column_type::trait_name(col);
        quote_spanned! {ty.span()=>
            #field: <#ty as #check>::decode(row, #i, #table, #column)?
        }
    });
    let default_fields = c
        .assocs
        .iter()
        .map(|a| a.ident)
        .chain(c.skipped.iter().copied())
        .map(|field| quote! { #field: ::core::default::Default::default() });

    let value_arms = c.columns.iter().enumerate().map(|(i, col)| {
        let (field, ty, check) = (col.ident, col.ty, column_type::trait_name(col));
        quote_spanned! {ty.span()=> #i => <#ty as #check>::to_value(&self.#field) }
    });

    let eq_arms = c.columns.iter().enumerate().map(|(i, col)| {
        let (field, ty, check) = (col.ident, col.ty, column_type::trait_name(col));
        quote_spanned! {ty.span()=> #i => <#ty as #check>::eq_value(&self.#field, value) }
    });

    let visit_arms = c.assocs.iter().enumerate().map(|(i, a)| {
        let field = a.ident;
        let related = &a.attr.related;
        let inner = &a.inner;
        let get = format_ident!("__rowsync_get_{}", field);
        let get_mut = format_ident!("__rowsync_get_mut_{}", field);
        helpers.push(quote! {
            fn #get(s: &#ident) -> &::rowsync::Assoc<#inner> { &s.#field }
            fn #get_mut(s: &mut #ident) -> &mut ::rowsync::Assoc<#inner> { &mut s.#field }
        });
        quote_spanned! {a.ty.span()=>
            #i => ::core::option::Option::Some(visitor.visit::<#related, #inner>(
                &<Self as rs::Schema>::meta().assocs[#i],
                rs::AssocField { get: #get, get_mut: #get_mut },
            ))
        }
    });
    let visit_arms: Vec<_> = visit_arms.collect();

    quote! {
        const _: () = {
            use ::rowsync::__private as rs;
            #(#helpers)*
            impl rs::Schema for #ident {
                fn meta() -> &'static rs::SchemaMeta {
                    static META: rs::SchemaMeta = rs::SchemaMeta {
                        name: #name,
                        table: rs::TableName { schema: #pg_schema, name: #table },
                        columns: &[#(#column_defs),*],
                        primary_key: &[#(#key_positions),*],
                        assocs: &[#(#assoc_defs),*],
                    };
                    &META
                }

                fn from_row(row: &mut dyn rs::RowSource) -> ::core::result::Result<Self, rs::DecodeError> {
                    ::core::result::Result::Ok(#ident {
                        #(#decode_fields,)*
                        #(#default_fields,)*
                    })
                }

                fn column_value(&self, index: usize) -> rs::Value {
                    match index {
                        #(#value_arms,)*
                        _ => rs::Value::Null,
                    }
                }

                #[inline]
                fn has_key(&self, key: &rs::Key) -> bool {
                    key.0.len() == #key_len #(&& #key_eqs)*
                }

                fn column_eq(&self, index: usize, value: &rs::Value) -> bool {
                    match index {
                        #(#eq_arms,)*
                        _ => value.is_null(),
                    }
                }

                #[allow(unused_variables)]
                fn visit_assoc<V: rs::AssocVisitor<Self>>(index: usize, visitor: V) -> ::core::option::Option<V::Output> {
                    match index {
                        #(#visit_arms,)*
                        _ => ::core::option::Option::None,
                    }
                }
            }
        };
    }
}

fn option_str(s: Option<&str>) -> TokenStream {
    match s {
        Some(s) => quote! { ::core::option::Option::Some(#s) },
        None => quote! { ::core::option::Option::None },
    }
}

fn assoc_def(
    c: &Container,
    a: &Assoc,
    owner_snake: &str,
    helpers: &mut Vec<TokenStream>,
) -> TokenStream {
    let name = a.ident.to_string();
    let related = &a.attr.related;
    let related_snake = related
        .segments
        .last()
        .map(|s| snake_case(&s.ident.to_string()))
        .unwrap_or_default();
    let fk = a.attr.foreign_key.as_ref().map(|l| l.value());
    let references = option_str(a.attr.references.as_ref().map(|l| l.value()).as_deref());
    let kind = if let Some((_, path)) = &a.attr.through {
        let names = path.iter().map(|p| p.to_string());
        quote! { rs::AssocKind::Through { path: &[#(#names),*] } }
    } else {
        match a.attr.kind {
            Kind::BelongsTo => {
                let fk = fk.unwrap_or_else(|| format!("{name}_id"));
                quote! { rs::AssocKind::BelongsTo { foreign_key: #fk, references: #references } }
            }
            Kind::HasMany | Kind::HasOne => {
                let fk = fk.unwrap_or_else(|| format!("{owner_snake}_id"));
                let variant = if a.attr.kind == Kind::HasMany {
                    quote!(HasMany)
                } else {
                    quote!(HasOne)
                };
                quote! { rs::AssocKind::#variant { foreign_key: #fk, references: #references } }
            }
            Kind::ManyToMany => {
                let (owner_key, related_key) = match &a.attr.join_keys {
                    Some((_, o, r)) => (o.value(), r.value()),
                    None => (format!("{owner_snake}_id"), format!("{related_snake}_id")),
                };
                let through = match &a.attr.join_through {
                    Some((_, JoinThrough::Table(t))) => {
                        let schema = option_str(c.pg_schema.as_deref());
                        quote! { rs::JoinThrough::Table(rs::TableName { schema: #schema, name: #t }) }
                    }
                    Some((_, JoinThrough::Schema(p))) => {
                        quote_spanned! {p.span()=> rs::JoinThrough::Schema(<#p as rs::Schema>::meta) }
                    }
                    None => quote! { compile_error!("join_through missing") },
                };
                quote! {
                    rs::AssocKind::ManyToMany { join_through: #through, join_keys: [#owner_key, #related_key] }
                }
            }
        }
    };
    let filter = match &a.attr.filter {
        Some((_, conds)) => {
            let f = format_ident!("__rowsync_filter_{}", a.ident);
            let body = conds_tokens(conds);
            helpers.push(quote! {
                fn #f() -> rs::Filter { rs::Filter::and(::std::vec![#(#body),*]) }
            });
            quote! { ::core::option::Option::Some(#f) }
        }
        None => quote! { ::core::option::Option::None },
    };
    let order_by = a.order_by.iter().map(|(col, desc)| {
        let order = if *desc { quote!(Desc) } else { quote!(Asc) };
        quote! { rs::OrderBy { column: #col, order: rs::SortOrder::#order } }
    });
    let many = a.attr.kind.is_many();
    quote_spanned! {related.span()=>
        rs::AssocDef {
            name: #name,
            related: <#related as rs::Schema>::meta,
            kind: #kind,
            filter: #filter,
            order_by: &[#(#order_by),*],
            many: #many,
        }
    }
}

fn conds_tokens(conds: &[Cond]) -> Vec<TokenStream> {
    conds.iter().map(cond_tokens).collect()
}

fn cond_tokens(cond: &Cond) -> TokenStream {
    match cond {
        Cond::Cmp {
            column,
            negated,
            value,
        } => {
            let col = column_name(column);
            let v = value_tokens(value);
            if *negated {
                quote! { rs::Filter::ne(#col, #v) }
            } else {
                quote! { rs::Filter::eq(#col, #v) }
            }
        }
        Cond::In {
            column,
            negated,
            values,
        } => {
            let col = column_name(column);
            let vs = values.iter().map(value_tokens);
            let f = quote! { rs::Filter::in_list(#col, ::std::vec![#(#vs),*] as ::std::vec::Vec<rs::Value>) };
            if *negated {
                quote! { rs::Filter::not(#f) }
            } else {
                f
            }
        }
        Cond::Not(inner) => {
            let body = conds_tokens(inner);
            quote! { rs::Filter::not(rs::Filter::and(::std::vec![#(#body),*])) }
        }
    }
}

fn column_name(ident: &syn::Ident) -> String {
    ident.to_string().trim_start_matches("r#").to_owned()
}

fn value_tokens(value: &FilterValue) -> TokenStream {
    match value {
        FilterValue::Null => quote! { rs::Value::Null },
        FilterValue::Lit(lit) => lit_tokens(lit, false),
        FilterValue::Neg(lit) => lit_tokens(lit, true),
    }
}

fn lit_tokens(lit: &syn::Lit, negative: bool) -> TokenStream {
    let sign = if negative { quote!(-) } else { quote!() };
    match lit {
        syn::Lit::Str(s) => quote! { rs::Value::Text(::std::string::String::from(#s)) },
        syn::Lit::Int(i) => {
            let digits = i.base10_digits();
            let n: TokenStream = digits.parse().unwrap_or_else(|_| quote!(0));
            quote! { rs::Value::I64(#sign #n) }
        }
        syn::Lit::Float(f) => {
            let digits = f.base10_digits();
            let n: TokenStream = digits.parse().unwrap_or_else(|_| quote!(0.0));
            quote! { rs::Value::F64(#sign #n) }
        }
        syn::Lit::Bool(b) => quote! { rs::Value::Bool(#b) },
        other => quote! { compile_error!(concat!("unsupported literal ", stringify!(#other))) },
    }
}
