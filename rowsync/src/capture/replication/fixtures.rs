//! A watched table for the unit tests of this module: `posts (id, body, person_id)` with a
//! schema, its plan, its start-up catalog, and Relation messages describing it.

use std::borrow::Cow;
use std::collections::HashMap;

use super::catalog::{CatalogColumn, CatalogTable};
use super::pgoutput::{Column, Relation, ReplicaIdentity};
use crate::capture::plan::TablePlan;
use crate::load::PgType;
use crate::schema::{ColumnDef, SchemaMeta, TableName};

pub const INT8: u32 = 20;
pub const TEXT: u32 = 25;

static POST_COLUMNS: [ColumnDef; 3] = [
    ColumnDef {
        name: "id",
        field: "id",
        rust_type: "i64",
        sql_types: &["int8"],
    },
    ColumnDef {
        name: "body",
        field: "body",
        rust_type: "String",
        sql_types: &["text"],
    },
    ColumnDef {
        name: "person_id",
        field: "person_id",
        rust_type: "Option<i64>",
        sql_types: &["int8"],
    },
];

pub static POST: SchemaMeta = SchemaMeta {
    name: "Post",
    table: TableName {
        schema: None,
        name: "posts",
    },
    columns: &POST_COLUMNS,
    primary_key: &[0],
    assocs: &[],
};

pub fn plan() -> TablePlan {
    TablePlan {
        table: POST.table,
        key: vec!["id"],
        routes: vec!["person_id"],
        types: vec![PgType::Int8, PgType::Int8],
        found_in: None,
    }
}

pub fn catalog() -> CatalogTable {
    let column = |type_oid, ty| CatalogColumn {
        type_oid,
        ty,
        generated: false,
    };
    CatalogTable {
        columns: HashMap::from([
            ("id".to_owned(), column(INT8, PgType::Int8)),
            ("body".to_owned(), column(TEXT, PgType::Text)),
            ("person_id".to_owned(), column(INT8, PgType::Int8)),
        ]),
        identity: 'd',
        identity_columns: vec!["id".to_owned()],
    }
}

/// `posts (person_id, id, body)`: another column order than the schema's, on purpose.
pub fn relation(full: bool, columns: &[(&'static str, u32)]) -> Relation<'static> {
    Relation {
        xid: None,
        oid: 1,
        namespace: Cow::Borrowed("public"),
        name: Cow::Borrowed("posts"),
        replica_identity: if full {
            ReplicaIdentity::Full
        } else {
            ReplicaIdentity::Default
        },
        columns: columns
            .iter()
            .map(|&(name, type_oid)| Column {
                flags: u8::from(full || name == "id"),
                name: Cow::Borrowed(name),
                type_oid,
                type_modifier: -1,
            })
            .collect(),
    }
}

pub const COLUMNS: [(&str, u32); 3] = [("person_id", INT8), ("id", INT8), ("body", TEXT)];
