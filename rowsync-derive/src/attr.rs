//! Parsing `#[rowsync(...)]` attributes into plain data with spans.

use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{bracketed, parenthesized, Ident, LitStr, Token};

/// The kinds of association an attribute can declare.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    HasMany,
    HasOne,
    BelongsTo,
    ManyToMany,
}

impl Kind {
    pub fn from_ident(ident: &Ident) -> Option<Kind> {
        Some(match ident.to_string().as_str() {
            "has_many" => Kind::HasMany,
            "has_one" => Kind::HasOne,
            "belongs_to" => Kind::BelongsTo,
            "many_to_many" => Kind::ManyToMany,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::HasMany => "has_many",
            Kind::HasOne => "has_one",
            Kind::BelongsTo => "belongs_to",
            Kind::ManyToMany => "many_to_many",
        }
    }

    pub fn is_many(self) -> bool {
        matches!(self, Kind::HasMany | Kind::ManyToMany)
    }
}

/// `join_through = "table"` or `join_through = JoinSchema`.
pub enum JoinThrough {
    Table(LitStr),
    Schema(syn::Path),
}

/// A literal in a filter.
#[derive(Clone)]
pub enum FilterValue {
    Null,
    Lit(syn::Lit),
    /// A negated number, e.g. `-1`.
    Neg(syn::Lit),
}

/// One condition of `filter(...)`.
pub enum Cond {
    /// `column = value` / `column != value`.
    Cmp {
        column: Ident,
        negated: bool,
        value: FilterValue,
    },
    /// `column in [a, b]` / `column not in [a, b]`.
    In {
        column: Ident,
        negated: bool,
        values: Vec<FilterValue>,
    },
    /// `not(cond, ...)`.
    Not(Vec<Cond>),
}

/// An association attribute, e.g. `has_many(Post, foreign_key = "person_id")`.
pub struct AssocAttr {
    pub kind: Kind,
    pub kind_ident: Ident,
    pub related: syn::Path,
    pub foreign_key: Option<LitStr>,
    pub references: Option<LitStr>,
    pub order_by: Option<LitStr>,
    pub join_through: Option<(Ident, JoinThrough)>,
    pub join_keys: Option<(Ident, LitStr, LitStr)>,
    pub filter: Option<(Ident, Vec<Cond>)>,
    pub through: Option<(Ident, Vec<Ident>)>,
}

impl AssocAttr {
    pub fn parse(kind: Kind, kind_ident: Ident, input: ParseStream) -> syn::Result<AssocAttr> {
        let content;
        parenthesized!(content in input);
        let related: syn::Path = content.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                format!(
                    "expected the related schema type first, e.g. `{}(Post, ...)`",
                    kind.name()
                ),
            )
        })?;
        let mut attr = AssocAttr {
            kind,
            kind_ident,
            related,
            foreign_key: None,
            references: None,
            order_by: None,
            join_through: None,
            join_keys: None,
            filter: None,
            through: None,
        };
        while !content.is_empty() {
            content.parse::<Token![,]>()?;
            if content.is_empty() {
                break;
            }
            let key: Ident = content.parse()?;
            let dup = || syn::Error::new(key.span(), format!("`{key}` given twice"));
            match key.to_string().as_str() {
                "foreign_key" | "references" | "order_by" => {
                    content.parse::<Token![=]>()?;
                    let value: LitStr = content.parse()?;
                    let slot = match key.to_string().as_str() {
                        "foreign_key" => &mut attr.foreign_key,
                        "references" => &mut attr.references,
                        _ => &mut attr.order_by,
                    };
                    if slot.replace(value).is_some() {
                        return Err(dup());
                    }
                }
                "join_through" => {
                    content.parse::<Token![=]>()?;
                    let value = if content.peek(LitStr) {
                        JoinThrough::Table(content.parse()?)
                    } else {
                        JoinThrough::Schema(content.parse()?)
                    };
                    if attr.join_through.replace((key.clone(), value)).is_some() {
                        return Err(dup());
                    }
                }
                "join_keys" => {
                    let inner;
                    parenthesized!(inner in content);
                    let owner: LitStr = inner.parse()?;
                    inner.parse::<Token![,]>()?;
                    let related: LitStr = inner.parse()?;
                    if !inner.is_empty() {
                        return Err(inner.error(
                            "`join_keys` takes two columns: (\"owner_key\", \"related_key\")",
                        ));
                    }
                    if attr
                        .join_keys
                        .replace((key.clone(), owner, related))
                        .is_some()
                    {
                        return Err(dup());
                    }
                }
                "filter" => {
                    let inner;
                    parenthesized!(inner in content);
                    let conds = parse_conds(&inner)?;
                    if attr.filter.replace((key.clone(), conds)).is_some() {
                        return Err(dup());
                    }
                }
                "through" => {
                    let inner;
                    parenthesized!(inner in content);
                    let names = Punctuated::<Ident, Token![,]>::parse_terminated(&inner)?;
                    if names.is_empty() {
                        return Err(syn::Error::new(
                            key.span(),
                            "`through` needs association names, e.g. `through(posts, tags)`",
                        ));
                    }
                    if attr
                        .through
                        .replace((key.clone(), names.into_iter().collect()))
                        .is_some()
                    {
                        return Err(dup());
                    }
                }
                other => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!(
                            "unknown option `{other}` for `{}`; expected one of: foreign_key, \
                             references, order_by, filter, join_through, join_keys, through",
                            kind.name()
                        ),
                    ))
                }
            }
        }
        Ok(attr)
    }
}

fn parse_conds(input: ParseStream) -> syn::Result<Vec<Cond>> {
    let conds = Punctuated::<Cond, Token![,]>::parse_terminated(input)?;
    if conds.is_empty() {
        return Err(input.error("an empty filter; write e.g. `filter(name = \"test\")`"));
    }
    Ok(conds.into_iter().collect())
}

impl Parse for Cond {
    fn parse(input: ParseStream) -> syn::Result<Cond> {
        let column: Ident = input.call(Ident::parse_any_ident)?;
        if column == "not" && input.peek(syn::token::Paren) {
            let inner;
            parenthesized!(inner in input);
            return Ok(Cond::Not(parse_conds(&inner)?));
        }
        if input.peek(Token![=]) && !input.peek(Token![==]) {
            input.parse::<Token![=]>()?;
            return Ok(Cond::Cmp {
                column,
                negated: false,
                value: input.parse()?,
            });
        }
        if input.peek(Token![!=]) {
            input.parse::<Token![!=]>()?;
            return Ok(Cond::Cmp {
                column,
                negated: true,
                value: input.parse()?,
            });
        }
        let negated = if input.peek(Ident) {
            let not: Ident = input.parse()?;
            if not != "not" {
                return Err(syn::Error::new(not.span(), "expected `not in` or `in`"));
            }
            true
        } else {
            false
        };
        if input.peek(Token![in]) {
            input.parse::<Token![in]>()?;
            let list;
            bracketed!(list in input);
            let values = Punctuated::<FilterValue, Token![,]>::parse_terminated(&list)?;
            return Ok(Cond::In {
                column,
                negated,
                values: values.into_iter().collect(),
            });
        }
        Err(input.error(
            "expected a condition: `col = value`, `col != value`, `col = null`, \
             `col in [a, b]`, `col not in [a, b]` or `not(...)`",
        ))
    }
}

trait ParseAnyIdent {
    fn parse_any_ident(input: ParseStream) -> syn::Result<Ident>;
}

impl ParseAnyIdent for Ident {
    // why: column names like `type` or `in` are Rust keywords; accept them as names.
    fn parse_any_ident(input: ParseStream) -> syn::Result<Ident> {
        use syn::ext::IdentExt;
        Ident::parse_any(input)
    }
}

impl Parse for FilterValue {
    fn parse(input: ParseStream) -> syn::Result<FilterValue> {
        if input.peek(Ident) {
            let ident: Ident = input.parse()?;
            if ident == "null" {
                return Ok(FilterValue::Null);
            }
            return Err(syn::Error::new(
                ident.span(),
                "expected a literal or `null` (e.g. \"text\", 42, 1.5, true, null)",
            ));
        }
        if input.peek(Token![-]) {
            input.parse::<Token![-]>()?;
            let lit: syn::Lit = input.parse()?;
            return match lit {
                syn::Lit::Int(_) | syn::Lit::Float(_) => Ok(FilterValue::Neg(lit)),
                other => Err(syn::Error::new_spanned(
                    other,
                    "only numbers can be negated",
                )),
            };
        }
        let lit: syn::Lit = input.parse()?;
        match lit {
            syn::Lit::Str(_) | syn::Lit::Int(_) | syn::Lit::Float(_) | syn::Lit::Bool(_) => {
                Ok(FilterValue::Lit(lit))
            }
            other => Err(syn::Error::new_spanned(
                other,
                "filters take string, integer, float or bool literals, or `null`",
            )),
        }
    }
}
