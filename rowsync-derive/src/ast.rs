//! A struct deriving `Schema`, parsed and checked into a model of columns and associations.

use syn::{Data, DeriveInput, Fields, GenericArgument, Ident, LitStr, PathArguments, Type};

use crate::attr::{AssocAttr, Kind};
use crate::ctxt::Ctxt;

pub struct Container<'a> {
    pub ident: &'a Ident,
    pub table: String,
    pub pg_schema: Option<String>,
    pub columns: Vec<Column<'a>>,
    pub assocs: Vec<Assoc<'a>>,
    pub skipped: Vec<&'a Ident>,
}

pub struct Column<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    pub name: String,
    pub primary_key: bool,
}

pub struct Assoc<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    /// `T` of the field's `Assoc<T>`.
    pub inner: Type,
    pub attr: AssocAttr,
    pub order_by: Vec<(String, bool)>,
}

impl<'a> Container<'a> {
    pub fn from_ast(cx: &Ctxt, input: &'a DeriveInput) -> Option<Container<'a>> {
        let (table, pg_schema) = container_attrs(cx, input);
        if !input.generics.params.is_empty() {
            cx.error(
                &input.generics,
                "`#[derive(Schema)]` does not support generic structs",
            );
        }
        let fields = match &input.data {
            Data::Struct(s) => match &s.fields {
                Fields::Named(named) => &named.named,
                _ => {
                    cx.error(
                        input,
                        "`#[derive(Schema)]` needs a struct with named fields",
                    );
                    return None;
                }
            },
            _ => {
                cx.error(input, "`#[derive(Schema)]` works on structs only");
                return None;
            }
        };
        let mut container = Container {
            ident: &input.ident,
            table: table.unwrap_or_default(),
            pg_schema,
            columns: Vec::new(),
            assocs: Vec::new(),
            skipped: Vec::new(),
        };
        for field in fields {
            let Some(ident) = field.ident.as_ref() else {
                continue;
            };
            let f = field_attrs(cx, field);
            if f.skip {
                container.skipped.push(ident);
                continue;
            }
            match f.assoc {
                Some(attr) => {
                    if let Some(span) = f.column_span {
                        cx.push(syn::Error::new(
                            span,
                            "an association field has no column; remove `column`/`primary_key`",
                        ));
                    }
                    if let Some(assoc) = check_assoc(cx, ident, &field.ty, attr) {
                        container.assocs.push(assoc);
                    }
                }
                // why `!f.unreadable`: an association attribute with a mistake in it was
                // reported already
                None if !f.unreadable && assoc_inner(&field.ty).is_some() => cx.error(
                    &field.ty,
                    "an `Assoc` field needs an association: add e.g. \
                     `#[rowsync(has_many(Post))]` (belongs_to, has_one, has_many or many_to_many)",
                ),
                None => container.columns.push(Column {
                    ident,
                    ty: &field.ty,
                    name: f
                        .column
                        .unwrap_or_else(|| ident.to_string().trim_start_matches("r#").to_owned()),
                    primary_key: f.primary_key,
                }),
            }
        }
        if !container.columns.iter().any(|c| c.primary_key) {
            match container.columns.iter_mut().find(|c| c.name == "id") {
                Some(id) => id.primary_key = true,
                None => cx.error(
                    &input.ident,
                    "no primary key: add a field `id`, or mark the key field(s) with \
                     `#[rowsync(primary_key)]`",
                ),
            }
        }
        Some(container)
    }
}

fn container_attrs(cx: &Ctxt, input: &DeriveInput) -> (Option<String>, Option<String>) {
    let mut table = None;
    let mut schema = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("rowsync")) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("table") {
                table = Some(meta.value()?.parse::<LitStr>()?.value());
            } else if meta.path.is_ident("schema") {
                schema = Some(meta.value()?.parse::<LitStr>()?.value());
            } else {
                return Err(meta.error(
                    "unknown container option; expected `table = \"...\"` or `schema = \"...\"`",
                ));
            }
            Ok(())
        });
        if let Err(e) = result {
            cx.push(e);
        }
    }
    if table.as_deref().is_none_or(str::is_empty) {
        cx.error(
            &input.ident,
            "missing table name: add `#[rowsync(table = \"...\")]` to the struct",
        );
    }
    (table, schema)
}

#[derive(Default)]
struct FieldAttrs {
    skip: bool,
    primary_key: bool,
    column: Option<String>,
    column_span: Option<proc_macro2::Span>,
    assoc: Option<AssocAttr>,
    /// An attribute could not be parsed (and its error was reported).
    unreadable: bool,
}

fn field_attrs(cx: &Ctxt, field: &syn::Field) -> FieldAttrs {
    let mut out = FieldAttrs::default();
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("rowsync")) {
        let result = attr.parse_nested_meta(|meta| {
            let Some(ident) = meta.path.get_ident().cloned() else {
                return Err(meta.error("expected a rowsync field option"));
            };
            if ident == "skip" {
                out.skip = true;
            } else if ident == "primary_key" {
                out.primary_key = true;
                out.column_span = Some(ident.span());
            } else if ident == "column" {
                out.column = Some(meta.value()?.parse::<LitStr>()?.value());
                out.column_span = Some(ident.span());
            } else if let Some(kind) = Kind::from_ident(&ident) {
                let parsed = AssocAttr::parse(kind, ident.clone(), meta.input)?;
                if out.assoc.replace(parsed).is_some() {
                    return Err(meta.error("a field holds one association"));
                }
            } else {
                return Err(meta.error(
                    "unknown field option; expected one of: primary_key, column = \"...\", \
                     skip, has_many(..), has_one(..), belongs_to(..), many_to_many(..)",
                ));
            }
            Ok(())
        });
        if let Err(e) = result {
            cx.push(e);
            out.unreadable = true;
        }
    }
    out
}

/// `T` in `Assoc<T>`, and the outer name of `T` (`Vec`, `Option`).
fn assoc_inner(ty: &Type) -> Option<(Type, String)> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Assoc" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let Some(GenericArgument::Type(inner)) = args.args.first() else {
        return None;
    };
    let Type::Path(inner_path) = inner else {
        return None;
    };
    let outer = inner_path.path.segments.last()?.ident.to_string();
    Some((inner.clone(), outer))
}

fn check_assoc<'a>(
    cx: &Ctxt,
    ident: &'a Ident,
    ty: &'a Type,
    attr: AssocAttr,
) -> Option<Assoc<'a>> {
    let kind = attr.kind;
    let many = kind.is_many() || attr.through.is_some() && kind == Kind::HasMany;
    let want = if many {
        "`Assoc<Vec<T>>`"
    } else {
        "`Assoc<Option<Box<T>>>` or `Assoc<Option<T>>`"
    };
    let inner = match assoc_inner(ty) {
        Some((inner, outer)) if (outer == "Vec") == many && (outer == "Option" || many) => inner,
        _ => {
            cx.error(
                ty,
                format!("a `{}` field must have type {want}", kind.name()),
            );
            return None;
        }
    };
    let not_for = |present: bool, what: &str, span: &dyn quote::ToTokens| {
        if present {
            cx.error(
                span,
                format!("`{what}` is not an option of `{}`", kind.name()),
            );
        }
    };
    let kind_ident = &attr.kind_ident;
    if kind != Kind::ManyToMany {
        if let Some((key, _)) = &attr.join_through {
            not_for(true, "join_through", key);
        }
        if let Some((key, _, _)) = &attr.join_keys {
            not_for(true, "join_keys", key);
        }
    } else {
        if attr.join_through.is_none() {
            cx.error(
                kind_ident,
                "`many_to_many` needs `join_through = \"table\"` or `join_through = JoinSchema`",
            );
        }
        not_for(attr.foreign_key.is_some(), "foreign_key", kind_ident);
        not_for(attr.references.is_some(), "references", kind_ident);
    }
    if let Some((key, _)) = &attr.through {
        if !matches!(kind, Kind::HasMany | Kind::HasOne) {
            not_for(true, "through", key);
        }
        if attr.foreign_key.is_some() || attr.references.is_some() {
            cx.error(key, "a `through` association takes its keys from the associations it follows; remove `foreign_key`/`references`");
        }
    }
    let mut order_by = Vec::new();
    if let Some(lit) = &attr.order_by {
        if !many {
            cx.error(lit, "`order_by` applies to associations holding many rows");
        }
        for term in lit.value().split(',') {
            let words: Vec<&str> = term.split_whitespace().collect();
            match words.as_slice() {
                [col] => order_by.push((col.to_string(), false)),
                [col, dir] if dir.eq_ignore_ascii_case("asc") => {
                    order_by.push((col.to_string(), false))
                }
                [col, dir] if dir.eq_ignore_ascii_case("desc") => {
                    order_by.push((col.to_string(), true))
                }
                _ => cx.error(
                    lit,
                    format!(
                        "cannot read order term `{}`; write e.g. \"name desc, id\"",
                        term.trim()
                    ),
                ),
            }
        }
    }
    Some(Assoc {
        ident,
        ty,
        inner,
        attr,
        order_by,
    })
}
