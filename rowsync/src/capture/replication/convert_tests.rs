//! Tuples of a hand-made Relation read into changes: keys, routing columns old and new,
//! replica identity DEFAULT vs FULL, unchanged TOASTed values, and schema drift.

use super::*;
use crate::capture::replication::fixtures::{catalog, plan, relation, COLUMNS, INT8, POST, TEXT};

fn map(full: bool) -> TableMap {
    let mapped = map_relation(&relation(full, &COLUMNS), &plan(), Some(&POST), &catalog());
    assert!(mapped.problems.is_empty(), "{:?}", mapped.problems);
    mapped.map.expect("routable")
}

fn tuple(values: [ColumnValue<'static>; 3]) -> TupleData<'static> {
    TupleData {
        columns: values.to_vec(),
    }
}

use ColumnValue::{Null, Text, Unchanged};

fn image(values: Vec<Value>) -> Carried {
    Carried::Row(RowImage::new(values))
}

#[test]
fn an_insert_carries_its_row_in_schema_order() {
    let (change, row) = map(false)
        .insert(&tuple([Text("7"), Text("1"), Text("hi")]), 9, 3)
        .unwrap();
    assert_eq!(change.op, Op::Inserted);
    assert_eq!(change.key, Key(vec![Value::I64(1)]));
    assert_eq!(change.columns, vec![("person_id", Value::I64(7))]);
    assert!(change.old_columns.is_empty() && change.old_key.is_none());
    assert_eq!((change.xid, change.seq), (9, 3));
    assert_eq!(
        row,
        image(vec![Value::I64(1), Value::Text("hi".into()), Value::I64(7)])
    );
}

#[test]
fn an_update_with_default_identity_has_no_old_routing_values() {
    let (change, row) = map(false)
        .update(None, &tuple([Text("8"), Text("1"), Text("hi")]), 9, 4)
        .unwrap();
    assert_eq!(change.columns, vec![("person_id", Value::I64(8))]);
    assert!(change.old_columns.is_empty());
    assert!(matches!(row, Carried::Row(_)));
}

#[test]
fn an_update_with_full_identity_names_the_old_routing_value() {
    let old = OldTuple::Full(tuple([Text("7"), Text("1"), Text("hi")]));
    let (change, _) = map(true)
        .update(Some(&old), &tuple([Text("8"), Text("1"), Text("hi")]), 9, 4)
        .unwrap();
    assert_eq!(change.old_columns, vec![("person_id", Value::I64(7))]);
    assert!(change.old_key.is_none(), "the key did not change");
}

#[test]
fn a_key_change_names_the_old_key() {
    // DEFAULT identity: the old key tuple sends `id` only; its other `n`s are "not sent"
    let old = OldTuple::Key(tuple([Null, Text("1"), Null]));
    let (change, _) = map(false)
        .update(Some(&old), &tuple([Text("7"), Text("2"), Text("hi")]), 9, 4)
        .unwrap();
    assert_eq!(change.key, Key(vec![Value::I64(2)]));
    assert_eq!(change.old_key, Some(Key(vec![Value::I64(1)])));
    assert!(
        change.old_columns.is_empty(),
        "person_id was not sent: no old value"
    );
}

#[test]
fn an_unchanged_toast_value_is_filled_from_a_full_old_row_or_not_carried() {
    let new = tuple([Text("7"), Text("1"), Unchanged]);
    let (_, row) = map(false).update(None, &new, 9, 4).unwrap();
    assert_eq!(row, Carried::Nothing, "DEFAULT: the row is read instead");
    let old = OldTuple::Full(tuple([Text("7"), Text("1"), Text("a long body")]));
    let (_, row) = map(true).update(Some(&old), &new, 9, 4).unwrap();
    assert_eq!(
        row,
        image(vec![
            Value::I64(1),
            Value::Text("a long body".into()),
            Value::I64(7)
        ])
    );
}

#[test]
fn a_delete_carries_what_the_identity_sends() {
    let old = OldTuple::Key(tuple([Null, Text("1"), Null]));
    let (change, row) = map(false).delete(&old, 9, 5).unwrap();
    assert_eq!(change.op, Op::Deleted);
    assert_eq!(change.key, Key(vec![Value::I64(1)]));
    assert!(
        change.columns.is_empty(),
        "person_id is not in the key tuple"
    );
    assert_eq!(row, Carried::Gone);
    let old = OldTuple::Full(tuple([Text("7"), Text("1"), Text("x")]));
    let (change, _) = map(true).delete(&old, 9, 5).unwrap();
    assert_eq!(change.columns, vec![("person_id", Value::I64(7))]);
}

#[test]
fn null_routing_values_stay_null() {
    let (change, _) = map(false)
        .insert(&tuple([Null, Text("1"), Text("x")]), 9, 3)
        .unwrap();
    assert_eq!(change.columns, vec![("person_id", Value::Null)]);
}

#[test]
fn unreadable_tuples_are_errors_not_panics() {
    let map = map(false);
    // wrong width
    let short = TupleData {
        columns: vec![Text("1")],
    };
    assert!(map.insert(&short, 1, 1).is_err());
    // a key that is not a number
    assert!(map
        .insert(&tuple([Null, Text("one"), Text("x")]), 1, 1)
        .is_err());
    // binary values were not asked for
    let binary = tuple([Null, ColumnValue::Binary(&[0, 1]), Text("x")]);
    assert!(map.insert(&binary, 1, 1).is_err());
    // a delete whose old tuple lacks the key
    let keyless = OldTuple::Key(tuple([Text("7"), Null, Null]));
    let mut no_identity = map.clone();
    no_identity.in_identity = vec![true, false, false];
    assert!(no_identity.delete(&keyless, 1, 1).is_err());
}

#[test]
fn a_renamed_or_retyped_column_is_reported() {
    let renamed = relation(false, &[("person_id", INT8), ("id", INT8), ("text", TEXT)]);
    let mapped = map_relation(&renamed, &plan(), Some(&POST), &catalog());
    assert_eq!(
        mapped.problems,
        ["column `body` is gone (renamed or dropped)"]
    );
    let map = mapped.map.expect("still routable");
    assert_eq!(map.image, None, "rows are not carried any more");

    let retyped = relation(false, &[("person_id", TEXT), ("id", INT8), ("body", TEXT)]);
    let mapped = map_relation(&retyped, &plan(), Some(&POST), &catalog());
    assert_eq!(
        mapped.problems,
        ["column `person_id` changed type (type oid 20 at start, now 25)"]
    );
    assert!(mapped.map.is_none(), "a routing column cannot be read");
}

#[test]
fn a_generated_column_is_not_a_change_but_rows_are_not_carried() {
    let mut catalog = catalog();
    catalog.columns.get_mut("body").unwrap().generated = true;
    let without_body = relation(false, &[("person_id", INT8), ("id", INT8)]);
    let mapped = map_relation(&without_body, &plan(), Some(&POST), &catalog);
    assert!(mapped.problems.is_empty(), "{:?}", mapped.problems);
    assert_eq!(mapped.map.unwrap().image, None);
}

#[test]
fn a_table_no_schema_maps_routes_and_carries_nothing() {
    let mapped = map_relation(&relation(false, &COLUMNS), &plan(), None, &catalog());
    let (_, row) = mapped
        .map
        .unwrap()
        .insert(&tuple([Text("7"), Text("1"), Text("x")]), 1, 1)
        .unwrap();
    assert_eq!(row, Carried::Nothing);
}
