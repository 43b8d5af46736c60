//! The pgoutput decoder on real server output: a logical slot on the throwaway cluster
//! (`wal_level = logical`), changes of every kind, and every message the server sends for them
//! decoded and checked.

use std::collections::HashMap;

use rowsync::testing::pgoutput::{
    decode, ColumnValue, Decoder, OldTuple, PgOutputMessage, Relation, RelationCache,
    ReplicaIdentity, TupleData,
};
use tokio_postgres::{Client, NoTls};

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connects to the throwaway cluster");
    tokio::spawn(connection);
    client
}

/// A database of its own on the throwaway cluster, with a slot in it; dropped by [`Slot::drop`].
struct Slot {
    admin: Client,
    sql: Client,
    dbname: String,
    name: String,
}

impl Slot {
    async fn create(suffix: &str, schema: &str) -> Slot {
        let server = rowsync_testdb::throwaway()
            .await
            .expect("the throwaway cluster starts");
        let dbname = format!("rowsync_pgoutput_{suffix}_{}", std::process::id());
        let admin = connect(server.url()).await;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {dbname} WITH (FORCE)"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {dbname} TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'"
            ))
            .await
            .unwrap();
        let sql = connect(&server.url_for(&dbname)).await;
        sql.batch_execute(schema).await.unwrap();
        // why after the publication: decoding reads the catalogs as of each change
        sql.execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&dbname],
        )
        .await
        .expect("a pgoutput slot");
        Slot {
            admin,
            sql,
            name: dbname.clone(),
            dbname,
        }
    }

    /// The raw messages from the slot, with the transaction id of each; `consume` advances the
    /// slot past them.
    async fn changes(&self, consume: bool, options: &[&str]) -> Vec<(i64, Vec<u8>)> {
        let function = if consume {
            "pg_logical_slot_get_binary_changes"
        } else {
            "pg_logical_slot_peek_binary_changes"
        };
        let options = options
            .iter()
            .map(|o| format!("'{o}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let query = format!(
            "SELECT xid::text::bigint, data FROM {function}($1, NULL, NULL, \
             'publication_names', 'pub', 'messages', 'true', {options})"
        );
        self.sql
            .query(&query, &[&self.name])
            .await
            .expect("reads the slot")
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    }

    async fn oid(&self, table: &str) -> u32 {
        self.sql
            .query_one("SELECT $1::text::regclass::oid", &[&table])
            .await
            .unwrap()
            .get(0)
    }

    /// Drops the slot (it retains WAL) and the database.
    async fn drop(self) {
        self.sql
            .execute("SELECT pg_drop_replication_slot($1)", &[&self.name])
            .await
            .expect("drops the slot");
        drop(self.sql);
        self.admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.dbname))
            .await
            .unwrap();
    }
}

const SCHEMA: &str = "
    CREATE TABLE people (id bigint PRIMARY KEY, name text NOT NULL, bio text);
    CREATE TABLE audit (id bigint PRIMARY KEY, note text, n int);
    ALTER TABLE audit REPLICA IDENTITY FULL;
    -- EXTERNAL: out of line without compression, so a large body is surely TOASTed
    CREATE TABLE docs (id bigint PRIMARY KEY, title text NOT NULL, body text);
    ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
    CREATE TABLE memberships (
        org_id int, user_id int, role text NOT NULL, PRIMARY KEY (org_id, user_id));
    CREATE PUBLICATION pub FOR TABLE people, audit, docs, memberships;
";

/// One transaction per entry (a multi-statement string runs as one transaction).
const TRANSACTIONS: &[&str] = &[
    "INSERT INTO people VALUES (1, 'ada', NULL), (2, 'zoë', 'hi')",
    "UPDATE people SET name = 'ada l' WHERE id = 1",
    "UPDATE people SET id = 10 WHERE id = 2",
    "DELETE FROM people WHERE id = 10",
    "INSERT INTO audit VALUES (1, 'x', 1);
     UPDATE audit SET n = 2 WHERE id = 1;
     DELETE FROM audit WHERE id = 1",
    "INSERT INTO docs VALUES (1, 'draft', repeat('lorem ipsum ', 1000))",
    "UPDATE docs SET title = 'final' WHERE id = 1",
    "INSERT INTO memberships VALUES (1, 2, 'admin');
     UPDATE memberships SET role = 'owner' WHERE org_id = 1 AND user_id = 2;
     DELETE FROM memberships WHERE org_id = 1 AND user_id = 2",
    "TRUNCATE audit, memberships RESTART IDENTITY",
    // why the non-transactional one first: PostgreSQL 15 does not flush its WAL record, and
    // the slot functions read only flushed WAL; the next commit flushes it
    "SELECT pg_logical_emit_message(false, 'np', 'y')",
    "SELECT pg_logical_emit_message(true, 'p', 'x')",
];

/// The transactions as the test expects to read them back, one line per data message.
fn expected() -> Vec<Vec<&'static str>> {
    vec![
        vec![
            "relation public.people identity default [id int8 key, name text, bio text]",
            "insert people {id: 1, name: ada, bio: null}",
            "insert people {id: 2, name: zoë, bio: hi}",
        ],
        vec!["update people {id: 1, name: ada l, bio: null}"],
        vec!["update people key {id: 2, name: null, bio: null} -> {id: 10, name: zoë, bio: hi}"],
        vec!["delete people key {id: 10, name: null, bio: null}"],
        vec![
            "relation public.audit identity full [id int8 key, note text key, n int4 key]",
            "insert audit {id: 1, note: x, n: 1}",
            "update audit old {id: 1, note: x, n: 1} -> {id: 1, note: x, n: 2}",
            "delete audit old {id: 1, note: x, n: 2}",
        ],
        vec![
            "relation public.docs identity default [id int8 key, title text, body text]",
            "insert docs {id: 1, title: draft, body: <12000 bytes>}",
        ],
        vec!["update docs {id: 1, title: final, body: <unchanged>}"],
        vec![
            "relation public.memberships identity default \
             [org_id int4 key, user_id int4 key, role text]",
            "insert memberships {org_id: 1, user_id: 2, role: admin}",
            "update memberships {org_id: 1, user_id: 2, role: owner}",
            "delete memberships key {org_id: 1, user_id: 2, role: null}",
        ],
        // TRUNCATE gives the tables new files, which invalidates what the server remembers
        // having sent: the Relation messages come again
        vec![
            "relation public.audit identity full [id int8 key, note text key, n int4 key]",
            "relation public.memberships identity default \
             [org_id int4 key, user_id int4 key, role text]",
            "truncate [audit, memberships] restart identity",
        ],
        vec!["message transactional p \"x\""],
    ]
}

fn type_name(oid: u32) -> &'static str {
    match oid {
        20 => "int8",
        23 => "int4",
        25 => "text",
        _ => "other",
    }
}

fn value(value: &ColumnValue<'_>) -> String {
    match value {
        ColumnValue::Null => "null".to_owned(),
        ColumnValue::Unchanged => "<unchanged>".to_owned(),
        ColumnValue::Text(text) if text.len() > 40 => format!("<{} bytes>", text.len()),
        ColumnValue::Text(text) => (*text).to_owned(),
        ColumnValue::Binary(bytes) => format!("{bytes:?}"),
    }
}

fn row(relation: &Relation<'_>, tuple: &TupleData<'_>) -> String {
    let fields: Vec<String> = relation
        .values(tuple)
        .expect("the tuple matches its relation")
        .map(|(column, v)| format!("{}: {}", column.name, value(v)))
        .collect();
    format!("{{{}}}", fields.join(", "))
}

fn old(relation: &Relation<'_>, old: &OldTuple<'_>) -> String {
    match old {
        OldTuple::Key(tuple) => format!("key {}", row(relation, tuple)),
        OldTuple::Full(tuple) => format!("old {}", row(relation, tuple)),
    }
}

/// One line for a data message, its table's columns read from the cache.
fn render(message: &PgOutputMessage<'_>, relations: &RelationCache) -> String {
    let relation = |oid| relations.get(oid).expect("a Relation came first");
    match message {
        PgOutputMessage::Relation(r) => {
            let columns: Vec<String> = r
                .columns
                .iter()
                .map(|c| {
                    assert_eq!(c.type_modifier, -1);
                    let key = if c.is_key() { " key" } else { "" };
                    format!("{} {}{key}", c.name, type_name(c.type_oid))
                })
                .collect();
            let identity = match r.replica_identity {
                ReplicaIdentity::Default => "default",
                ReplicaIdentity::Nothing => "nothing",
                ReplicaIdentity::Full => "full",
                ReplicaIdentity::Index => "index",
            };
            format!(
                "relation {}.{} identity {identity} [{}]",
                r.namespace,
                r.name,
                columns.join(", ")
            )
        }
        PgOutputMessage::Insert(m) => {
            let r = relation(m.relation_oid);
            format!("insert {} {}", r.name, row(r, &m.new))
        }
        PgOutputMessage::Update(m) => {
            let r = relation(m.relation_oid);
            match &m.old {
                None => format!("update {} {}", r.name, row(r, &m.new)),
                Some(o) => format!("update {} {} -> {}", r.name, old(r, o), row(r, &m.new)),
            }
        }
        PgOutputMessage::Delete(m) => {
            let r = relation(m.relation_oid);
            format!("delete {} {}", r.name, old(r, &m.old))
        }
        PgOutputMessage::Truncate(m) => {
            let names: Vec<&str> = m
                .relation_oids
                .iter()
                .map(|oid| &*relation(*oid).name)
                .collect();
            let restart = if m.restart_identity() {
                " restart identity"
            } else {
                ""
            };
            let cascade = if m.cascade() { " cascade" } else { "" };
            format!("truncate [{}]{restart}{cascade}", names.join(", "))
        }
        PgOutputMessage::Message(m) => format!(
            "message {} {} {:?}",
            if m.transactional() {
                "transactional"
            } else {
                "non-transactional"
            },
            m.prefix,
            String::from_utf8_lossy(m.content)
        ),
        other => panic!("not a data message: {other:?}"),
    }
}

#[tokio::test]
async fn decodes_every_message_the_server_sends_with_protocol_1() {
    let slot = Slot::create("v1", SCHEMA).await;
    for transaction in TRANSACTIONS {
        slot.sql.batch_execute(transaction).await.unwrap();
    }
    // binary values (`binary`, here with protocol 2 outside any stream): peeked first, so the
    // slot keeps the changes for the text read
    let binary = slot
        .changes(false, &["proto_version", "2", "binary", "true"])
        .await;
    let rows = slot.changes(true, &["proto_version", "1"]).await;

    let mut relations = RelationCache::new();
    let mut transactions: Vec<Vec<String>> = Vec::new();
    let mut open: Option<(rowsync::testing::pgoutput::Begin, Vec<String>)> = None;
    let mut last_commit = None;
    let mut outside = Vec::new();
    for (xid, bytes) in &rows {
        let message = decode(bytes).unwrap_or_else(|e| panic!("{e}: {bytes:02x?}"));
        relations.observe(&message);
        match message {
            PgOutputMessage::Begin(begin) => {
                assert!(open.is_none(), "Begin inside a transaction");
                assert_eq!(i64::from(begin.xid), *xid);
                let committed = begin.timestamp.to_chrono().expect("a commit time");
                let age = chrono::Utc::now() - committed;
                assert!(age.num_minutes().abs() < 10, "commit time {committed}");
                open = Some((begin, Vec::new()));
            }
            PgOutputMessage::Commit(commit) => {
                let (begin, lines) = open.take().expect("Commit after Begin");
                assert_eq!(commit.commit_lsn, begin.final_lsn);
                assert_eq!(commit.timestamp, begin.timestamp);
                assert_eq!(commit.flags, 0);
                assert!(commit.end_lsn > commit.commit_lsn);
                assert!(last_commit <= Some(commit.commit_lsn), "commit order");
                last_commit = Some(commit.end_lsn);
                transactions.push(lines);
            }
            data => {
                let line = render(&data, &relations);
                match open.as_mut() {
                    Some((_, lines)) => lines.push(line),
                    None => outside.push(line),
                }
            }
        }
    }
    assert!(open.is_none(), "every Begin has its Commit");
    assert_eq!(transactions, expected());
    assert_eq!(outside, ["message non-transactional np \"y\""]);

    // relation oids are the tables' oids
    for table in ["people", "audit", "docs", "memberships"] {
        let oid = slot.oid(table).await;
        assert_eq!(relations.get(oid).map(|r| &*r.name), Some(table));
    }

    // the same changes with `binary`: int8 as 8 big-endian bytes, text as its bytes, and the
    // unchanged TOASTed body still `u`
    let people = slot.oid("people").await;
    let docs = slot.oid("docs").await;
    let mut decoder = Decoder::new();
    let inserts: Vec<_> = binary
        .iter()
        .filter_map(|(_, bytes)| match decoder.decode(bytes).expect("decodes") {
            PgOutputMessage::Insert(m) if m.relation_oid == people => Some(m.new.columns.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        inserts[1],
        [
            ColumnValue::Binary(&2i64.to_be_bytes()),
            ColumnValue::Binary("zoë".as_bytes()),
            ColumnValue::Binary(b"hi"),
        ]
    );
    let docs_update = binary.iter().find_map(|(_, bytes)| match decode(bytes) {
        Ok(PgOutputMessage::Update(m)) if m.relation_oid == docs => Some(m.new.columns.clone()),
        _ => None,
    });
    assert_eq!(
        docs_update.expect("the docs update").last(),
        Some(&ColumnValue::Unchanged)
    );

    slot.drop().await;
}

#[tokio::test]
async fn decodes_streamed_transactions_with_protocol_2() {
    let slot = Slot::create(
        "v2",
        "CREATE TABLE items (id bigint PRIMARY KEY, note text NOT NULL);
         CREATE PUBLICATION pub FOR TABLE items;",
    )
    .await;
    let big = |from: i64| {
        format!(
            "INSERT INTO items SELECT g, 'item ' || g FROM generate_series({from}, {}) g",
            from + 1999
        )
    };
    // committed, aborted, and committed with an aborted subtransaction
    slot.sql.batch_execute(&big(0)).await.unwrap();
    slot.sql
        .batch_execute(&format!("BEGIN; {}; ROLLBACK", big(10_000)))
        .await
        .unwrap();
    slot.sql
        .batch_execute(&format!(
            "BEGIN; {}; SAVEPOINT s; {}; ROLLBACK TO s; COMMIT",
            big(20_000),
            big(30_000)
        ))
        .await
        .unwrap();
    // why: a transaction streams once it passes logical_decoding_work_mem in the decoding session
    slot.sql
        .batch_execute("SET logical_decoding_work_mem = '64kB'")
        .await
        .unwrap();
    let rows = slot
        .changes(true, &["proto_version", "2", "streaming", "on"])
        .await;

    let mut decoder = Decoder::new();
    let mut stream_xid = None;
    let mut streamed: HashMap<u32, usize> = HashMap::new(); // inserts per (sub)transaction
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    for (_, bytes) in &rows {
        let message = decoder
            .decode(bytes)
            .unwrap_or_else(|e| panic!("{e}: {bytes:02x?}"));
        match message {
            PgOutputMessage::StreamStart(start) => {
                stream_xid = Some(start.xid);
                starts.push((start.xid, start.first_segment));
            }
            PgOutputMessage::StreamStop => stream_xid = None,
            PgOutputMessage::Insert(insert) => {
                assert!(stream_xid.is_some(), "all three transactions stream");
                let xid = insert.xid.expect("a streamed change carries its xid");
                *streamed.entry(xid).or_default() += 1;
                assert_eq!(insert.new.columns.len(), 2);
            }
            PgOutputMessage::Relation(relation) => {
                assert_eq!(relation.xid, stream_xid, "sent inside the stream");
                assert_eq!(relation.name, "items");
            }
            PgOutputMessage::StreamCommit(commit) => {
                assert!(commit.end_lsn > commit.commit_lsn);
                ends.push(format!("commit {}", commit.xid));
            }
            PgOutputMessage::StreamAbort(abort) => {
                assert_eq!(
                    abort.abort, None,
                    "no abort LSN without streaming = parallel"
                );
                if abort.xid == abort.subtransaction_xid {
                    ends.push(format!("abort {}", abort.xid));
                } else {
                    ends.push(format!("abort {} sub", abort.xid));
                    let discarded = streamed.remove(&abort.subtransaction_xid);
                    assert!(
                        discarded.is_some(),
                        "the subtransaction's changes were streamed"
                    );
                }
            }
            other => panic!("unexpected outside a stream: {other:?}"),
        }
    }
    assert!(!decoder.in_stream());

    // three transactions, each first streamed with first_segment set
    let mut xids: Vec<u32> = starts
        .iter()
        .filter(|(_, first)| *first)
        .map(|(xid, _)| *xid)
        .collect();
    xids.dedup();
    let [committed, aborted, with_savepoint] = xids[..] else {
        panic!("expected three streamed transactions: {starts:?}");
    };
    assert_eq!(
        ends,
        [
            format!("commit {committed}"),
            format!("abort {aborted}"),
            format!("abort {with_savepoint} sub"),
            format!("commit {with_savepoint}"),
        ]
    );
    // what remains once the aborts discard theirs: the two committed inserts in full
    streamed.remove(&aborted);
    assert_eq!(
        streamed,
        HashMap::from([(committed, 2000), (with_savepoint, 2000)])
    );

    slot.drop().await;
}
