//! The capture triggers: every write to a watched table is notified with the payload the
//! decoder expects, installation is idempotent, reversible and merges what hubs sharing a
//! channel need, and names of any length or spelling work.

use std::time::Duration;

use futures_util::StreamExt;
use rowsync::testing::{
    decode, function_name, install, install_sql, quote_ident, trigger_name, truncate_trigger_name,
    uninstall, Decoded,
};
use rowsync::{
    CapturePlan, Change, Graph, Op, PgType, PreloadTree, TableName, TablePlan, TriggerError,
};
use rowsync::{Key, Schema, Value};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls, Notification};

use crate::support::schemas::{Person, Post, PostsTags};
use crate::support::{fixture, seeded, Fixture};

const CHANNEL: &str = "rowsync_test";

/// The plan of the example: persons with posts (tags, labels) and favourite people.
fn person_plan() -> CapturePlan {
    let graph = Graph::builder().register::<Person>().build().unwrap();
    let tree = PreloadTree::parse(
        Person::meta(),
        ["posts.tags", "posts.labels", "favourite_people"],
    )
    .unwrap();
    CapturePlan::new(&graph, &[(Person::meta(), tree)]).unwrap()
}

/// A plan of exactly one table, built by hand.
fn plan_of(table: TablePlan) -> CapturePlan {
    CapturePlan::from_tables([table])
}

/// The plan of `table` within `plan`.
fn table_plan<'a>(plan: &'a CapturePlan, table: &TableName) -> &'a TablePlan {
    plan.table(table).expect("watched")
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Fills every table's `types` (key, then routes) from the catalog.
async fn fill_types(client: &Client, plan: &mut CapturePlan) {
    for table in plan.tables_mut() {
        let mut types = Vec::new();
        for column in table.columns().collect::<Vec<_>>() {
            let row = client
                .query_one(
                    "SELECT t.typname::text, t.typtype = 'e' FROM pg_attribute a \
                     JOIN pg_type t ON t.oid = a.atttypid \
                     WHERE a.attrelid = to_regclass($1::text) AND a.attname = $2",
                    &[&table.table.to_string(), &column],
                )
                .await
                .unwrap_or_else(|e| panic!("type of {}.{column}: {e}", table.table));
            types.push(PgType::from_catalog(row.get(0), row.get(1)));
        }
        table.types = types;
    }
}

/// A fresh connection LISTENing on `channel`, and the notifications it receives.
async fn listen(f: &Fixture, channel: &str) -> (Client, mpsc::UnboundedReceiver<Notification>) {
    let (client, mut connection) = tokio_postgres::connect(f.db.url(), NoTls).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    // why poll_message: spawning the connection future alone drops notifications
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    tokio::spawn(async move {
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = tx.send(n);
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {}", quote_ident(channel)))
        .await
        .unwrap();
    (client, rx)
}

/// Runs `sql` in one transaction and returns that transaction's id.
async fn write(client: &mut Client, sql: &str) -> u64 {
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let xid: String = tx
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .await
        .unwrap()
        .get(0);
    tx.commit().await.unwrap();
    xid.parse().unwrap()
}

async fn next_payload(rx: &mut mpsc::UnboundedReceiver<Notification>) -> String {
    let n = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no notification within 10 s")
        .expect("listener closed");
    assert_eq!(n.channel(), CHANNEL);
    n.payload().to_owned()
}

async fn next_change(rx: &mut mpsc::UnboundedReceiver<Notification>, plan: &CapturePlan) -> Change {
    let payload = next_payload(rx).await;
    // "p" and "m" are left out, not null, when there is nothing to say: the documented format
    let raw: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&payload).unwrap();
    for (name, value) in &raw {
        assert!(
            ["v", "o", "s", "t", "x", "i", "n", "p"].contains(&name.as_str()),
            "{payload}"
        );
        assert!(!value.is_null(), "{payload}");
    }
    match decode(payload.as_bytes(), plan, 0) {
        Ok(Decoded::Change(c)) => c,
        other => panic!("{payload} decoded as {other:?}"),
    }
}

/// What a change should decode to; columns are given by name and put in the plan's order.
struct Expect {
    op: Op,
    table: TableName,
    key: Vec<Value>,
    columns: Vec<(&'static str, Value)>,
    old_columns: Vec<(&'static str, Value)>,
    old_key: Option<Vec<Value>>,
}

fn expect(
    op: Op,
    table: TableName,
    key: Vec<Value>,
    columns: Vec<(&'static str, Value)>,
) -> Expect {
    Expect {
        op,
        table,
        key,
        columns,
        old_columns: Vec::new(),
        old_key: None,
    }
}

impl Expect {
    /// An update that changed routing columns: their old values.
    fn was(mut self, old_columns: Vec<(&'static str, Value)>) -> Expect {
        self.old_columns = old_columns;
        self
    }

    /// An update that changed the key: the old key.
    fn was_key(mut self, old_key: Vec<Value>) -> Expect {
        self.old_key = Some(old_key);
        self
    }

    fn change(&self, plan: &CapturePlan, xid: u64) -> Change {
        let routes = &plan
            .find(self.table.schema_or_public(), self.table.name)
            .expect("watched")
            .routes;
        let ordered = |given: &[(&'static str, Value)]| -> Vec<(&'static str, Value)> {
            if given.is_empty() {
                return Vec::new();
            }
            let mut names: Vec<_> = given.iter().map(|(c, _)| *c).collect();
            names.sort_unstable();
            let mut expected_names = routes.clone();
            expected_names.sort_unstable();
            assert_eq!(names, expected_names, "routes of {}", self.table);
            routes
                .iter()
                .map(|r| given.iter().find(|(c, _)| c == r).unwrap().clone())
                .collect()
        };
        Change {
            op: self.op,
            table: self.table,
            key: Key(self.key.clone()),
            old_key: self.old_key.clone().map(Key),
            columns: ordered(&self.columns),
            old_columns: ordered(&self.old_columns),
            xid,
            seq: 0,
        }
    }
}

async fn installed_triggers(client: &Client, like: &str) -> Vec<(String, String)> {
    client
        .query(
            "SELECT tgrelid::regclass::text, tgname::text FROM pg_trigger \
             WHERE NOT tgisinternal AND tgname LIKE $1 ORDER BY 1, 2",
            &[&like],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn installed_functions(client: &Client, like: &str) -> Vec<String> {
    client
        .query(
            "SELECT proname::text FROM pg_proc WHERE proname LIKE $1 ORDER BY 1",
            &[&like],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn every_write_is_notified_as_the_decoder_expects() {
    let mut f = seeded().await;
    let mut plan = person_plan();
    fill_types(&f.sql, &mut plan).await;
    install(&mut f.sql, &plan, CHANNEL).await.unwrap();
    let (_listener, mut rx) = listen(&f, CHANNEL).await;
    let persons = Person::meta().table;
    let posts = Post::meta().table;
    let posts_tags = PostsTags::meta().table;
    let posts_labels = TableName {
        schema: None,
        name: "posts_labels",
    };
    let favourites = TableName {
        schema: None,
        name: "favourite_people",
    };
    let i = Value::I64;

    let cases: Vec<(&str, Expect)> = vec![
        (
            "INSERT INTO persons (id, name) VALUES (50, 'dora')",
            expect(Op::Inserted, persons, vec![i(50)], vec![("id", i(50))]),
        ),
        (
            "UPDATE persons SET name = 'dorothy' WHERE id = 50",
            expect(Op::Updated, persons, vec![i(50)], vec![("id", i(50))]),
        ),
        (
            "INSERT INTO posts (id, name, person_id) VALUES (60, 'new', NULL)",
            expect(
                Op::Inserted,
                posts,
                vec![i(60)],
                vec![("id", i(60)), ("person_id", Value::Null)],
            ),
        ),
        (
            "UPDATE posts SET name = 'renamed' WHERE id = 60",
            expect(
                Op::Updated,
                posts,
                vec![i(60)],
                vec![("id", i(60)), ("person_id", Value::Null)],
            ),
        ),
        (
            "UPDATE posts SET person_id = 50 WHERE id = 60",
            expect(
                Op::Updated,
                posts,
                vec![i(60)],
                vec![("id", i(60)), ("person_id", i(50))],
            )
            .was(vec![("id", i(60)), ("person_id", Value::Null)]),
        ),
        (
            "UPDATE posts SET id = 61 WHERE id = 60",
            expect(
                Op::Updated,
                posts,
                vec![i(61)],
                vec![("id", i(61)), ("person_id", i(50))],
            )
            .was(vec![("id", i(60)), ("person_id", i(50))])
            .was_key(vec![i(60)]),
        ),
        (
            "INSERT INTO posts_tags (post_id, tag_id) VALUES (61, 3)",
            expect(
                Op::Inserted,
                posts_tags,
                vec![i(61), i(3)],
                vec![("post_id", i(61)), ("tag_id", i(3))],
            ),
        ),
        (
            "DELETE FROM posts_tags WHERE post_id = 61",
            expect(
                Op::Deleted,
                posts_tags,
                vec![i(61), i(3)],
                vec![("post_id", i(61)), ("tag_id", i(3))],
            ),
        ),
        (
            "INSERT INTO posts_labels (post_id, label_id) VALUES (61, 1)",
            expect(
                Op::Inserted,
                posts_labels,
                vec![i(61), i(1)],
                vec![("post_id", i(61)), ("label_id", i(1))],
            ),
        ),
        (
            "UPDATE posts_labels SET label_id = 2 WHERE post_id = 61",
            expect(
                Op::Updated,
                posts_labels,
                vec![i(61), i(2)],
                vec![("post_id", i(61)), ("label_id", i(2))],
            )
            .was(vec![("post_id", i(61)), ("label_id", i(1))])
            .was_key(vec![i(61), i(1)]),
        ),
        (
            "DELETE FROM posts_labels WHERE post_id = 61",
            expect(
                Op::Deleted,
                posts_labels,
                vec![i(61), i(2)],
                vec![("post_id", i(61)), ("label_id", i(2))],
            ),
        ),
        (
            "INSERT INTO favourite_people (person_id, favourite_id) VALUES (50, 1)",
            expect(
                Op::Inserted,
                favourites,
                vec![i(50), i(1)],
                vec![("person_id", i(50)), ("favourite_id", i(1))],
            ),
        ),
        (
            "DELETE FROM favourite_people WHERE person_id = 50",
            expect(
                Op::Deleted,
                favourites,
                vec![i(50), i(1)],
                vec![("person_id", i(50)), ("favourite_id", i(1))],
            ),
        ),
        (
            "DELETE FROM posts WHERE id = 61",
            expect(
                Op::Deleted,
                posts,
                vec![i(61)],
                vec![("id", i(61)), ("person_id", i(50))],
            ),
        ),
        (
            "DELETE FROM persons WHERE id = 50",
            expect(Op::Deleted, persons, vec![i(50)], vec![("id", i(50))]),
        ),
    ];
    for (sql, expect) in &cases {
        let xid = write(&mut f.sql, sql).await;
        let change = next_change(&mut rx, &plan).await;
        assert_eq!(change, expect.change(&plan, xid), "after {sql}");
    }

    // one transaction, several rows: each notified, in statement order
    let xid = write(
        &mut f.sql,
        "INSERT INTO posts_tags (post_id, tag_id) VALUES (4, 1); \
         INSERT INTO posts_tags (post_id, tag_id) VALUES (4, 2)",
    )
    .await;
    for tag in [1, 2] {
        let expected = expect(
            Op::Inserted,
            posts_tags,
            vec![i(4), i(tag)],
            vec![("post_id", i(4)), ("tag_id", i(tag))],
        );
        assert_eq!(
            next_change(&mut rx, &plan).await,
            expected.change(&plan, xid)
        );
    }
}

#[tokio::test]
async fn installing_twice_is_idempotent_and_replaces_a_stale_function() {
    let mut f = fixture().await;
    let plan = person_plan();
    let posts = table_plan(&plan, &Post::meta().table);
    // an older, different body under the same name, with its trigger
    f.sql
        .batch_execute(&format!(
            "CREATE FUNCTION {schema}.{function}() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN PERFORM pg_notify('{CHANNEL}', 'stale'); RETURN NULL; END $$; \
             CREATE TRIGGER {trigger} AFTER INSERT ON posts FOR EACH ROW \
             EXECUTE FUNCTION {schema}.{function}();",
            schema = quote_ident("public"),
            function = quote_ident(&function_name(posts, CHANNEL)),
            trigger = quote_ident(&trigger_name(posts, CHANNEL)),
        ))
        .await
        .unwrap();

    let tables = plan.tables().count();
    assert_eq!(install(&mut f.sql, &plan, CHANNEL).await.unwrap(), tables);
    assert_eq!(
        install(&mut f.sql, &plan, CHANNEL).await.unwrap(),
        0,
        "nothing to rewrite the second time"
    );

    let triggers = installed_triggers(&f.sql, "rowsync\\_%").await;
    let mut expected: Vec<(String, String)> = plan
        .tables()
        .flat_map(|t| {
            [
                (t.table.name.to_owned(), trigger_name(t, CHANNEL)),
                (t.table.name.to_owned(), truncate_trigger_name(t, CHANNEL)),
            ]
        })
        .collect();
    expected.sort();
    assert_eq!(
        triggers, expected,
        "a row and a truncate trigger per watched table"
    );
    let comment: Option<String> = f
        .sql
        .query_one(
            "SELECT obj_description(to_regprocedure($1::text), 'pg_proc')",
            &[&format!("public.{}()", function_name(posts, CHANNEL))],
        )
        .await
        .unwrap()
        .get(0);
    let comment: serde_json::Value = serde_json::from_str(&comment.expect("a comment")).unwrap();
    assert_eq!(comment["rowsync"], "capture");
    assert_eq!(comment["format"], 2);
    assert_eq!(comment["channel"], CHANNEL);
    assert_eq!(comment["columns"], serde_json::json!(["id", "person_id"]));

    let mut plan = plan;
    fill_types(&f.sql, &mut plan).await;
    let (_listener, mut rx) = listen(&f, CHANNEL).await;
    write(
        &mut f.sql,
        "INSERT INTO posts (id, name) VALUES (7, 'fresh')",
    )
    .await;
    let payload = next_payload(&mut rx).await;
    assert_ne!(payload, "stale", "the stale function was replaced");
    assert!(
        matches!(decode(payload.as_bytes(), &plan, 0), Ok(Decoded::Change(_))),
        "{payload}"
    );
}

#[tokio::test]
async fn two_hubs_installing_at_once_do_not_conflict() {
    let mut f = fixture().await;
    let mut other = f.db.connect().await.unwrap();
    let plan = person_plan();
    for _ in 0..10 {
        let (a, b) = tokio::join!(
            install(&mut f.sql, &plan, CHANNEL),
            install(&mut other, &plan, CHANNEL)
        );
        a.unwrap();
        b.unwrap();
    }
    let triggers = installed_triggers(&f.sql, "rowsync\\_%").await;
    assert_eq!(triggers.len(), 2 * plan.tables().count());
}

#[tokio::test]
async fn long_table_names_get_short_distinct_names_that_work() {
    let mut f = fixture().await;
    let common = "long_table_".to_owned() + &"n".repeat(44);
    assert_eq!(common.len(), 55);
    let names = [
        leak(format!("{common}_alpha")),
        leak(format!("{common}_omega")),
    ];
    let mut plans = Vec::new();
    for name in names {
        assert_eq!(name.len(), 61);
        f.sql
            .batch_execute(&format!(
                "CREATE TABLE {} (id bigint PRIMARY KEY, owner bigint)",
                quote_ident(name)
            ))
            .await
            .unwrap();
        let table = TableName { schema: None, name };
        let mut plan = plan_of(TablePlan::new(table, vec!["id"], vec!["owner"]));
        fill_types(&f.sql, &mut plan).await;
        install(&mut f.sql, &plan, CHANNEL).await.unwrap();
        plans.push((table, plan));
    }
    let [(a, plan_a), (b, plan_b)] = &plans[..] else {
        unreachable!()
    };
    let (pa, pb) = (table_plan(plan_a, a), table_plan(plan_b, b));
    assert_ne!(function_name(pa, CHANNEL), function_name(pb, CHANNEL));
    assert_ne!(trigger_name(pa, CHANNEL), trigger_name(pb, CHANNEL));

    // the catalog holds our names unchanged: PostgreSQL did not have to truncate them
    let triggers = installed_triggers(&f.sql, "rowsync\\_%").await;
    let mut expected = vec![
        (a.name.to_owned(), trigger_name(pa, CHANNEL)),
        (a.name.to_owned(), truncate_trigger_name(pa, CHANNEL)),
        (b.name.to_owned(), trigger_name(pb, CHANNEL)),
        (b.name.to_owned(), truncate_trigger_name(pb, CHANNEL)),
    ];
    expected.sort();
    assert_eq!(triggers, expected);
    let mut functions = vec![function_name(pa, CHANNEL), function_name(pb, CHANNEL)];
    functions.sort();
    assert_eq!(installed_functions(&f.sql, "rowsync\\_%").await, functions);

    let (_listener, mut rx) = listen(&f, CHANNEL).await;
    for (table, plan) in &plans {
        let xid = write(&mut f.sql, &format!("INSERT INTO {table} VALUES (1, 2)")).await;
        let expected = expect(
            Op::Inserted,
            *table,
            vec![Value::I64(1)],
            vec![("owner", Value::I64(2))],
        );
        assert_eq!(next_change(&mut rx, plan).await, expected.change(plan, xid));
    }
}

#[tokio::test]
async fn a_row_too_large_for_notify_sends_the_overflow_payload() {
    let mut f = fixture().await;
    f.sql
        .batch_execute("CREATE TABLE documents (id text PRIMARY KEY, owner bigint)")
        .await
        .unwrap();
    let table = TableName {
        schema: None,
        name: "documents",
    };
    let mut plan = plan_of(TablePlan::new(table, vec!["id"], vec!["owner"]));
    fill_types(&f.sql, &mut plan).await;
    install(&mut f.sql, &plan, CHANNEL).await.unwrap();
    let (_listener, mut rx) = listen(&f, CHANNEL).await;

    // the writer's transaction commits, and subscribers learn they must resync
    let xid = write(
        &mut f.sql,
        "INSERT INTO documents VALUES (repeat('x', 9000), 1)",
    )
    .await;
    let payload = next_payload(&mut rx).await;
    assert!(payload.len() < 8000);
    assert_eq!(
        decode(payload.as_bytes(), &plan, 0),
        Ok(Decoded::Overflow { table, xid })
    );
    let count: i64 = f
        .sql
        .query_one("SELECT count(*) FROM documents", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);

    // a row that fits is still described
    let xid = write(&mut f.sql, "INSERT INTO documents VALUES ('small', 2)").await;
    let expected = expect(
        Op::Inserted,
        table,
        vec![Value::Text("small".into())],
        vec![("owner", Value::I64(2))],
    );
    assert_eq!(
        next_change(&mut rx, &plan).await,
        expected.change(&plan, xid)
    );
}

#[tokio::test]
async fn uninstall_removes_every_trigger_and_function() {
    let mut f = fixture().await;
    let plan = person_plan();
    install(&mut f.sql, &plan, CHANNEL).await.unwrap();
    assert_eq!(
        installed_triggers(&f.sql, "rowsync\\_%").await.len(),
        2 * plan.tables().count()
    );

    uninstall(&mut f.sql, &plan, CHANNEL).await.unwrap();
    assert_eq!(installed_triggers(&f.sql, "rowsync\\_%").await, vec![]);
    assert_eq!(
        installed_functions(&f.sql, "rowsync\\_%").await,
        Vec::<String>::new()
    );
    uninstall(&mut f.sql, &plan, CHANNEL)
        .await
        .expect("uninstalling again is harmless");

    // writes no longer notify, and succeed
    let (_listener, mut rx) = listen(&f, CHANNEL).await;
    write(
        &mut f.sql,
        "INSERT INTO persons (id, name) VALUES (1, 'alice')",
    )
    .await;
    f.sql
        .batch_execute(&format!("NOTIFY {CHANNEL}, 'marker'"))
        .await
        .unwrap();
    assert_eq!(
        next_payload(&mut rx).await,
        "marker",
        "nothing came before the marker"
    );
}

/// A quote, a space, capitals, and a dollar-quote tag in names.
#[tokio::test]
async fn quotes_spaces_and_capitals_in_names_work() {
    let mut f = fixture().await;
    let table = TableName {
        schema: Some("We\"ird Schema"),
        name: "Odd \"Table\" Name",
    };
    f.sql
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {table} ({key} bigint PRIMARY KEY, {route} text)",
            schema = quote_ident("We\"ird Schema"),
            key = quote_ident("Key \"Col\""),
            route = quote_ident("Route $rowsync$ Col"),
        ))
        .await
        .unwrap();
    let mut plan = plan_of(TablePlan::new(
        table,
        vec!["Key \"Col\""],
        vec!["Route $rowsync$ Col"],
    ));
    fill_types(&f.sql, &mut plan).await;
    install(&mut f.sql, &plan, CHANNEL).await.unwrap();
    let (_listener, mut rx) = listen(&f, CHANNEL).await;

    let tricky = "it's \"quoted\"; -- $rowsync$ \\ é";
    let insert = format!("INSERT INTO {table} VALUES (1, 'plain')");
    let xid = write(&mut f.sql, &insert).await;
    let text = |s: &str| Value::Text(s.to_owned());
    let expected = expect(
        Op::Inserted,
        table,
        vec![Value::I64(1)],
        vec![("Route $rowsync$ Col", text("plain"))],
    );
    assert_eq!(
        next_change(&mut rx, &plan).await,
        expected.change(&plan, xid)
    );

    let tx = f.sql.transaction().await.unwrap();
    tx.execute(
        &format!(
            "UPDATE {table} SET {} = $1",
            quote_ident("Route $rowsync$ Col")
        ),
        &[&tricky],
    )
    .await
    .unwrap();
    let xid: String = tx
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .await
        .unwrap()
        .get(0);
    tx.commit().await.unwrap();
    let expected = expect(
        Op::Updated,
        table,
        vec![Value::I64(1)],
        vec![("Route $rowsync$ Col", text(tricky))],
    )
    .was(vec![("Route $rowsync$ Col", text("plain"))]);
    assert_eq!(
        next_change(&mut rx, &plan).await,
        expected.change(&plan, xid.parse().unwrap())
    );

    uninstall(&mut f.sql, &plan, CHANNEL).await.unwrap();
    assert_eq!(
        installed_functions(&f.sql, "rowsync\\_%").await,
        Vec::<String>::new()
    );
}

/// The payload of the next notification, as JSON.
async fn next_json(rx: &mut mpsc::UnboundedReceiver<Notification>) -> serde_json::Value {
    serde_json::from_str(&next_payload(rx).await).unwrap()
}

/// A plan of `tags` alone, with its types.
async fn tags_plan(client: &Client) -> CapturePlan {
    let mut plan = plan_of(TablePlan::new(
        TableName {
            schema: None,
            name: "tags",
        },
        vec!["id"],
        vec![],
    ));
    fill_types(client, &mut plan).await;
    plan
}

#[tokio::test]
async fn identical_events_of_one_transaction_are_each_notified_in_statement_order() {
    let mut f = fixture().await;
    let plan = tags_plan(&f.sql).await;
    install(&mut f.sql, &plan, CHANNEL).await.unwrap();
    let (_listener, mut rx) = listen(&f, CHANNEL).await;
    // an insert, a delete and an insert of one row carry the same key: without a per-event
    // number NOTIFY folds the second insert into the first
    let xid = write(
        &mut f.sql,
        "INSERT INTO tags VALUES (70, 'x'); DELETE FROM tags WHERE id = 70; \
         INSERT INTO tags VALUES (70, 'x'); \
         SAVEPOINT s; DELETE FROM tags WHERE id = 70; ROLLBACK TO s; \
         SAVEPOINT t; UPDATE tags SET name = name WHERE id = 70; RELEASE t; \
         UPDATE tags SET name = name WHERE id = 70",
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        let p = next_json(&mut rx).await;
        assert_eq!(p["x"], xid.to_string());
        seen.push((
            p["o"].as_str().unwrap().to_owned(),
            p["i"].as_u64().unwrap(),
        ));
    }
    // the rolled-back delete is gone with its savepoint, and so is its number
    let expected: Vec<(String, u64)> = [("I", 1), ("D", 2), ("I", 3), ("U", 4), ("U", 5)]
        .into_iter()
        .map(|(o, i)| (o.to_owned(), i))
        .collect();
    assert_eq!(seen, expected);
    // the next transaction counts from 1 again
    write(&mut f.sql, "UPDATE tags SET name = name WHERE id = 70").await;
    assert_eq!(next_json(&mut rx).await["i"], 1);
}

#[tokio::test]
async fn truncate_is_notified_once_per_statement() {
    let mut f = seeded().await;
    let plan = tags_plan(&f.sql).await;
    install(&mut f.sql, &plan, CHANNEL).await.unwrap();
    let (_listener, mut rx) = listen(&f, CHANNEL).await;
    let xid = write(&mut f.sql, "TRUNCATE tags CASCADE").await;
    let payload = next_payload(&mut rx).await;
    let table = TableName {
        schema: None,
        name: "tags",
    };
    assert_eq!(
        decode(payload.as_bytes(), &plan, 0),
        Ok(Decoded::Truncated { table, xid })
    );
}

#[tokio::test]
async fn hubs_sharing_a_channel_get_the_union_of_their_columns_which_never_shrinks() {
    let mut f = seeded().await;
    let posts = Post::meta().table;
    let only_key = |routes| plan_of(TablePlan::new(posts, vec!["id"], routes));
    let mut a = only_key(vec!["other_person_id"]);
    let mut b = only_key(vec!["person_id"]);
    fill_types(&f.sql, &mut a).await;
    fill_types(&f.sql, &mut b).await;
    install(&mut f.sql, &a, CHANNEL).await.unwrap();
    install(&mut f.sql, &b, CHANNEL).await.unwrap();
    // a again, as after a restart: b's column stays
    assert_eq!(install(&mut f.sql, &a, CHANNEL).await.unwrap(), 0);
    let (_listener, mut rx) = listen(&f, CHANNEL).await;
    let xid = write(
        &mut f.sql,
        "UPDATE posts SET person_id = 2, other_person_id = 3 WHERE id = 1",
    )
    .await;
    let payload = next_payload(&mut rx).await;
    let n = &serde_json::from_str::<serde_json::Value>(&payload).unwrap()["n"];
    assert_eq!(
        n,
        &serde_json::json!({"id": "1", "other_person_id": "3", "person_id": "2"})
    );
    let i = Value::I64;
    for (plan, route, new, old) in [(&a, "other_person_id", 3, 2), (&b, "person_id", 2, 1)] {
        let expected = expect(Op::Updated, posts, vec![i(1)], vec![(route, i(new))])
            .was(vec![(route, i(old))]);
        let Ok(Decoded::Change(change)) = decode(payload.as_bytes(), plan, 0) else {
            panic!("{payload}")
        };
        assert_eq!(change, expected.change(plan, xid));
    }
    // a hub on another channel has a function of its own
    install(&mut f.sql, &a, "elsewhere").await.unwrap();
    let p = table_plan(&a, &posts);
    assert_ne!(function_name(p, CHANNEL), function_name(p, "elsewhere"));
    assert_eq!(
        installed_functions(&f.sql, "rowsync\\_posts\\_%")
            .await
            .len(),
        2
    );
}

#[tokio::test]
async fn version_1_objects_are_removed_at_install() {
    let mut f = fixture().await;
    f.sql
        .batch_execute(
            "CREATE FUNCTION public.rowsync_public_posts_notify() RETURNS trigger \
             LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$; \
             CREATE TRIGGER rowsync_posts_trg AFTER INSERT OR UPDATE OR DELETE ON posts \
             FOR EACH ROW EXECUTE FUNCTION public.rowsync_public_posts_notify();",
        )
        .await
        .unwrap();
    install(&mut f.sql, &person_plan(), CHANNEL).await.unwrap();
    assert_eq!(
        installed_triggers(&f.sql, "rowsync\\_posts\\_trg").await,
        vec![]
    );
    assert_eq!(
        installed_functions(&f.sql, "rowsync\\_public\\_posts\\_notify").await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_renamed_or_dropped_column_never_fails_a_writer() {
    let mut f = seeded().await;
    let mut plan = person_plan();
    fill_types(&f.sql, &mut plan).await;
    install(&mut f.sql, &plan, CHANNEL).await.unwrap();
    let (_listener, mut rx) = listen(&f, CHANNEL).await;
    let posts = Post::meta().table;

    f.sql
        .batch_execute("ALTER TABLE posts RENAME COLUMN person_id TO owner_id")
        .await
        .unwrap();
    let xid = write(
        &mut f.sql,
        "INSERT INTO posts (id, name, owner_id) VALUES (30, 'n', 1)",
    )
    .await;
    let payload = next_payload(&mut rx).await;
    let raw: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(raw["m"], serde_json::json!(["person_id"]), "{payload}");
    assert_eq!(
        decode(payload.as_bytes(), &plan, 0),
        Ok(Decoded::MissingColumns {
            table: posts,
            xid,
            columns: vec!["person_id".to_owned()]
        })
    );

    // an update reads the old row too; a drop is a rename to nowhere
    f.sql
        .batch_execute("ALTER TABLE posts DROP COLUMN owner_id")
        .await
        .unwrap();
    write(&mut f.sql, "UPDATE posts SET name = 'm' WHERE id = 30").await;
    write(&mut f.sql, "DELETE FROM posts WHERE id = 30").await;
    for op in ["U", "D"] {
        let raw = next_json(&mut rx).await;
        assert_eq!(
            (raw["o"].as_str(), &raw["m"]),
            (Some(op), &serde_json::json!(["person_id"]))
        );
        assert_eq!(raw["n"], serde_json::json!({"id": "30"}));
    }
}

/// A column retyped under a session that already ran the trigger: functions that read
/// `NEW.column` keep a plan typed for the old type and fail the writer; ours read by name.
#[tokio::test]
async fn a_retyped_column_never_fails_a_writer_that_already_fired_the_trigger() {
    let mut f = fixture().await;
    f.sql
        .batch_execute("CREATE TABLE gauges (id bigint PRIMARY KEY, owner bigint)")
        .await
        .unwrap();
    let mut plan = plan_of(TablePlan::new(
        TableName {
            schema: None,
            name: "gauges",
        },
        vec!["id"],
        vec!["owner"],
    ));
    fill_types(&f.sql, &mut plan).await;
    install(&mut f.sql, &plan, CHANNEL).await.unwrap();
    let (_listener, mut rx) = listen(&f, CHANNEL).await;
    write(&mut f.sql, "INSERT INTO gauges VALUES (1, 2)").await;
    assert_eq!(next_json(&mut rx).await["n"]["owner"], "2");
    for (ddl, write_sql, owner) in [
        (
            "ALTER TABLE gauges ALTER COLUMN owner TYPE text",
            "UPDATE gauges SET owner = 'x' WHERE id = 1",
            "x",
        ),
        (
            "ALTER TABLE gauges ALTER COLUMN owner TYPE int4 USING 3",
            "UPDATE gauges SET owner = 4 WHERE id = 1",
            "4",
        ),
    ] {
        f.sql.batch_execute(ddl).await.unwrap();
        write(&mut f.sql, write_sql).await;
        assert_eq!(next_json(&mut rx).await["n"]["owner"], owner, "after {ddl}");
    }
}

#[tokio::test]
async fn functions_pin_their_search_path_and_are_not_executable_by_public() {
    let mut f = fixture().await;
    let plan = person_plan();
    install(&mut f.sql, &plan, CHANNEL).await.unwrap();
    for table in plan.tables() {
        let row = f
            .sql
            .query_one(
                "SELECT p.proconfig, \
                        EXISTS (SELECT FROM aclexplode(p.proacl) WHERE grantee = 0), \
                        p.proacl IS NULL \
                 FROM pg_proc p WHERE p.oid = to_regprocedure($1::text)",
                &[&format!(
                    "{}.{}()",
                    quote_ident(table.pg_schema()),
                    quote_ident(&function_name(table, CHANNEL))
                )],
            )
            .await
            .unwrap();
        let config: Vec<String> = row.get(0);
        assert_eq!(config, ["search_path=pg_catalog, pg_temp"]);
        assert!(!row.get::<_, bool>(1), "PUBLIC may execute {}", table.table);
        assert!(!row.get::<_, bool>(2), "default ACL (PUBLIC executes)");
    }
}

#[test]
fn a_channel_that_is_not_a_plain_identifier_is_refused() {
    let plan = person_plan();
    match install_sql(&plan, "bad-name;") {
        Err(TriggerError::InvalidChannel(c)) => assert_eq!(c, "bad-name;"),
        other => panic!("{other:?}"),
    }
    assert!(install_sql(&plan, CHANNEL).is_ok());
}
