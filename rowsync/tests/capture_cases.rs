//! What can happen to capture, each case ending with held data equal to a fresh load: the
//! changes arrive, or a resync of the right reason does and syncing it reloads the data.
//! Writers never see an error from capture's triggers.

use std::time::Duration;

use rowsync::testing::{
    function_name, quote_ident, trigger_name, truncate_trigger_name, EVENT_TRIGGER,
};
use rowsync::{
    Held, Hub, HubBuilder, Message, Op, ResyncReason, Schema, Selector, Subscription, NO_PRELOADS,
};
use tokio::time::timeout;
use tokio_postgres::{Client, NoTls};

use crate::support::schemas::{Person, Tag};
use crate::support::{seeded, wait_for_xid, FIXTURE, SEED};

const WAIT: Duration = Duration::from_secs(10);

/// A table in a schema of its own, found through the search path (case 6).
#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "gadgets")]
pub struct Gadget {
    pub id: i64,
    pub name: String,
}

// ---------------------------------------------------------------------------------------
// Harness

/// A database of our own on the throwaway cluster, where we are a superuser (roles, event
/// triggers, `session_replication_role`, `DISABLE TRIGGER ALL`).
struct OwnDatabase {
    url: String,
    sql: Client,
    admin: Client,
    name: String,
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

impl OwnDatabase {
    async fn create(tag: &str) -> OwnDatabase {
        let server = rowsync_testdb::throwaway()
            .await
            .expect("the throwaway cluster starts");
        let name = format!("rowsync_cases_{tag}_{}", std::process::id());
        let admin = connect(server.url()).await;
        // why two calls: neither statement may run in the implicit transaction of a batch
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'"
            ))
            .await
            .unwrap();
        let url = server.url_for(&name);
        let sql = connect(&url).await;
        sql.batch_execute(FIXTURE).await.unwrap();
        sql.batch_execute(SEED).await.unwrap();
        OwnDatabase {
            url,
            sql,
            admin,
            name,
        }
    }

    async fn drop(self) {
        drop(self.sql);
        self.admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .unwrap();
    }
}

/// A hub that sends no check of its own accord (but at start, on a reconnect, and on hints):
/// tests run the check when they mean to.
fn hub(url: &str) -> HubBuilder {
    Hub::builder(url).capture_check_interval(Duration::ZERO)
}

/// Waits until every change committed so far has been routed by `hub`: a no-op update of
/// row 3 of `table` (`S`'s), heard by a witness; changes arrive in commit order.
async fn settle<S: Schema>(hub: &Hub, sql: &Client, table: &str) {
    let mut witness = hub
        .subscribe_to::<S>(Op::Updated, Selector::row(3i64))
        .unwrap();
    let xid: String = sql
        .query_one(
            &format!(
                "WITH t AS (UPDATE {table} SET name = name WHERE id = 3 RETURNING 1) \
                 SELECT pg_current_xact_id()::text FROM t"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    wait_for_xid(&mut witness, xid.parse().unwrap()).await;
}

/// Syncs every message routed to `sub` before a sentinel on `table` into `data`, and
/// returns them.
async fn drain<S: Schema, W: Schema, H: Held<S>>(
    hub: &Hub,
    sql: &Client,
    table: &str,
    sub: &mut Subscription,
    data: &mut H,
) -> Vec<Message> {
    settle::<W>(hub, sql, table).await;
    let mut seen = Vec::new();
    while let Some(message) = sub.try_next() {
        sub.sync(data, &message)
            .await
            .unwrap_or_else(|e| panic!("syncing {message:?}: {e}"));
        seen.push(message);
    }
    seen
}

fn resyncs(messages: &[Message]) -> Vec<&ResyncReason> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::Resync(reason) => Some(reason),
            Message::Change(_) => None,
        })
        .collect()
}

/// Whether a `SchemaChanged` resync of `table` whose detail contains `words` arrived.
fn schema_changed(messages: &[Message], table: &str, words: &str) -> bool {
    resyncs(messages).iter().any(|r| {
        matches!(r, ResyncReason::SchemaChanged { table: t, detail }
            if t.name == table && detail.contains(words))
    })
}

/// Tags, each with the ids of its posts: what the tests compare (collections unordered).
fn tags_view(tags: &[Tag]) -> Vec<(i64, String, Option<Vec<i64>>)> {
    let mut view: Vec<_> = tags
        .iter()
        .map(|t| {
            let posts = t.posts.loaded().map(|posts| {
                let mut ids: Vec<i64> = posts.iter().map(|p| p.id).collect();
                ids.sort_unstable();
                ids
            });
            (t.id, t.name.clone(), posts)
        })
        .collect();
    view.sort();
    view
}

async fn fresh_tags(hub: &Hub, preloads: &[&str]) -> Vec<Tag> {
    hub.query::<Tag>().preload(preloads).all().await.unwrap()
}

/// People 1 and 2 with `preloads`, as a fresh load gives them.
async fn fresh_people(hub: &Hub, preloads: &[&str]) -> Vec<Person> {
    hub.query::<Person>()
        .filter(rowsync::Filter::in_list("id", [1i64, 2]))
        .preload(preloads)
        .all()
        .await
        .unwrap()
}

/// Holds every tag with `preloads`.
async fn hold_tags(hub: &Hub, preloads: &[&str]) -> (Vec<Tag>, Subscription) {
    let tags = fresh_tags(hub, preloads).await;
    let sub = hub.subscribe_table::<Tag>(preloads).unwrap();
    (tags, sub)
}

/// Holds people 1 and 2 with `preloads`.
async fn hold_people(hub: &Hub, preloads: &[&str]) -> (Vec<Person>, Subscription) {
    let people = fresh_people(hub, preloads).await;
    let sub = hub.subscribe(&people, preloads).unwrap();
    (people, sub)
}

/// Waits (bounded) for a resync on `sub` satisfying `wanted`, syncing into `data` every
/// message up to it.
async fn wait_for_resync<S: Schema, H: Held<S>>(
    sub: &mut Subscription,
    data: &mut H,
    wanted: impl Fn(&ResyncReason) -> bool,
) {
    loop {
        let message = match timeout(WAIT, sub.next()).await {
            Ok(Some(message)) => message,
            Ok(None) => panic!("the subscription ended"),
            Err(_) => panic!("no such resync within {WAIT:?}"),
        };
        sub.sync(data, &message)
            .await
            .unwrap_or_else(|e| panic!("syncing {message:?}: {e}"));
        if matches!(&message, Message::Resync(reason) if wanted(reason)) {
            return;
        }
    }
}

async fn trigger_states(sql: &Client, table: &str) -> Vec<(String, String)> {
    sql.query(
        "SELECT tgname::text, tgenabled::text FROM pg_trigger \
         WHERE tgrelid = to_regclass($1) AND tgname LIKE 'rowsync%' ORDER BY 1",
        &[&table],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

const TAG_SENTINEL: &str = "tags";
const PERSON_SENTINEL: &str = "persons";

// ---------------------------------------------------------------------------------------
// Case 1: identical notifications of one transaction

#[tokio::test]
async fn an_insert_delete_and_insert_of_one_row_in_one_transaction_all_arrive() {
    let f = seeded().await;
    let hub = hub(f.db.url())
        .watch::<Tag>(["posts"])
        .start()
        .await
        .unwrap();
    let (mut tags, mut sub) = hold_tags(&hub, &["posts"]).await;
    f.sql
        .batch_execute(
            "BEGIN;
             INSERT INTO tags VALUES (70, 'x'); DELETE FROM tags WHERE id = 70;
             INSERT INTO tags VALUES (70, 'x');
             INSERT INTO posts_tags VALUES (1, 70); DELETE FROM posts_tags WHERE tag_id = 70;
             INSERT INTO posts_tags VALUES (1, 70);
             INSERT INTO tags VALUES (71, 'y');
             SAVEPOINT s; DELETE FROM tags WHERE id = 71; ROLLBACK TO s;
             COMMIT;",
        )
        .await
        .unwrap();
    let messages = drain::<Tag, Tag, _>(&hub, &f.sql, TAG_SENTINEL, &mut sub, &mut tags).await;
    assert_eq!(resyncs(&messages), Vec::<&ResyncReason>::new());
    let fresh = fresh_tags(&hub, &["posts"]).await;
    assert!(fresh.iter().any(|t| t.id == 70), "the oracle has tag 70");
    assert_eq!(tags_view(&tags), tags_view(&fresh));
    hub.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Case 2: several hubs on one database

/// Three hubs: two sharing a channel with overlapping watch sets (posts needs `id` for one,
/// `id` and `person_id` for the other), one on a channel of its own.
#[tokio::test]
async fn hubs_with_different_watch_sets_and_channels_work_side_by_side_in_either_order() {
    for reversed in [false, true] {
        let f = seeded().await;
        let builders = [
            hub(f.db.url()).channel("shared").watch::<Tag>(["posts"]),
            hub(f.db.url())
                .channel("shared")
                .watch::<Person>(["posts", "profile"]),
            hub(f.db.url()).channel("own").watch::<Tag>(NO_PRELOADS),
        ];
        let mut hubs = Vec::new();
        let order: Vec<usize> = if reversed {
            vec![2, 1, 0]
        } else {
            vec![0, 1, 2]
        };
        let mut builders: Vec<Option<HubBuilder>> = builders.into_iter().map(Some).collect();
        for i in order {
            hubs.push((i, builders[i].take().unwrap().start().await.unwrap()));
        }
        hubs.sort_by_key(|(i, _)| *i);
        let [(_, a), (_, b), (_, c)] = &hubs[..] else {
            unreachable!()
        };
        let (mut a_tags, mut a_sub) = hold_tags(a, &["posts"]).await;
        let (mut b_people, mut b_sub) = hold_people(b, &["posts", "profile"]).await;
        let (mut c_tags, mut c_sub) = hold_tags(c, &[]).await;
        f.sql
            .batch_execute(
                "UPDATE tags SET name = 'renamed' WHERE id = 1;
                 INSERT INTO posts (id, name, person_id) VALUES (50, 'p', 2);
                 INSERT INTO posts_tags VALUES (50, 1);
                 UPDATE posts SET person_id = 1 WHERE id = 3;
                 UPDATE profiles SET bio = 'new' WHERE id = 1;
                 INSERT INTO tags VALUES (80, 'new');",
            )
            .await
            .unwrap();
        let context = if reversed {
            "started C, B, A"
        } else {
            "started A, B, C"
        };
        let m = drain::<Tag, Tag, _>(a, &f.sql, TAG_SENTINEL, &mut a_sub, &mut a_tags).await;
        assert_eq!(resyncs(&m), Vec::<&ResyncReason>::new(), "{context}");
        assert_eq!(
            tags_view(&a_tags),
            tags_view(&fresh_tags(a, &["posts"]).await),
            "{context}"
        );
        let m =
            drain::<Person, Person, _>(b, &f.sql, PERSON_SENTINEL, &mut b_sub, &mut b_people).await;
        assert_eq!(resyncs(&m), Vec::<&ResyncReason>::new(), "{context}");
        assert_eq!(
            b_people,
            fresh_people(b, &["posts", "profile"]).await,
            "{context}"
        );
        let m = drain::<Tag, Tag, _>(c, &f.sql, TAG_SENTINEL, &mut c_sub, &mut c_tags).await;
        assert_eq!(resyncs(&m), Vec::<&ResyncReason>::new(), "{context}");
        assert_eq!(
            tags_view(&c_tags),
            tags_view(&fresh_tags(c, &[]).await),
            "{context}"
        );
        for (_, hub) in &hubs {
            assert_eq!(hub.check_capture().await.unwrap(), vec![], "{context}");
            hub.shutdown().await;
        }
    }
}

/// A deploy replaces a hub watching `other_posts` (posts routed by `other_person_id`) with
/// one watching `posts` and `profile` (posts routed by `person_id`), both running a while.
#[tokio::test]
async fn a_rolling_deploy_that_changes_the_watch_set_keeps_every_hub_working() {
    let f = seeded().await;
    let old = hub(f.db.url())
        .watch::<Person>(["other_posts"])
        .start()
        .await
        .unwrap();
    let (mut old_people, mut old_sub) = hold_people(&old, &["other_posts"]).await;
    let new = hub(f.db.url())
        .watch::<Person>(["posts", "profile"])
        .start()
        .await
        .unwrap();
    let (mut new_people, mut new_sub) = hold_people(&new, &["posts", "profile"]).await;
    f.sql
        .batch_execute(
            "UPDATE posts SET other_person_id = 1, person_id = 2 WHERE id = 2;
             INSERT INTO posts (id, name, person_id, other_person_id) VALUES (51, 'q', 1, 2);",
        )
        .await
        .unwrap();
    for (hub, sub, people, shape) in [
        (&old, &mut old_sub, &mut old_people, &["other_posts"][..]),
        (
            &new,
            &mut new_sub,
            &mut new_people,
            &["posts", "profile"][..],
        ),
    ] {
        let m = drain::<Person, Person, _>(hub, &f.sql, PERSON_SENTINEL, sub, people).await;
        assert_eq!(resyncs(&m), Vec::<&ResyncReason>::new(), "{shape:?}");
        assert_eq!(*people, fresh_people(hub, shape).await, "{shape:?}");
        assert_eq!(hub.check_capture().await.unwrap(), vec![], "{shape:?}");
    }
    // the old hub goes; starting it again (a rollback) shrinks nothing the new one needs
    old.shutdown().await;
    let again = hub(f.db.url())
        .watch::<Person>(["other_posts"])
        .start()
        .await
        .unwrap();
    f.sql
        .batch_execute("UPDATE posts SET person_id = 1 WHERE id = 51")
        .await
        .unwrap();
    let m =
        drain::<Person, Person, _>(&new, &f.sql, PERSON_SENTINEL, &mut new_sub, &mut new_people)
            .await;
    assert_eq!(resyncs(&m), Vec::<&ResyncReason>::new());
    assert_eq!(new_people, fresh_people(&new, &["posts", "profile"]).await);
    assert_eq!(new.check_capture().await.unwrap(), vec![]);
    again.shutdown().await;
    new.shutdown().await;
}

/// What `hub` installed for `table` on `channel`: its function (`"schema"."name"()`), the
/// qualified table, and the quoted names of its row and truncate triggers.
fn installed(hub: &Hub, table: &str, channel: &str) -> (String, String, String, String) {
    let plan = hub
        .plan()
        .tables()
        .find(|t| t.table.name == table)
        .expect("watched");
    (
        format!(
            "{}.{}()",
            quote_ident(plan.pg_schema()),
            quote_ident(&function_name(plan, channel))
        ),
        plan.qualified(),
        quote_ident(&trigger_name(plan, channel)),
        quote_ident(&truncate_trigger_name(plan, channel)),
    )
}

#[tokio::test]
async fn a_hub_whose_function_is_rewritten_or_dropped_says_so_and_repairs_it() {
    let f = seeded().await;
    let hub = hub(f.db.url())
        .watch::<Tag>(["posts"])
        .start()
        .await
        .unwrap();
    let (mut tags, mut sub) = hold_tags(&hub, &["posts"]).await;
    let (function, _, _, _) = installed(&hub, "tags", "rowsync");

    // someone rewrites the function (its comment stays): changes go silent
    let before = hub.stats().capture_problems;
    f.sql
        .batch_execute(&format!(
            "CREATE OR REPLACE FUNCTION {function} RETURNS trigger LANGUAGE plpgsql \
             AS $$ BEGIN RETURN NULL; END $$;
             UPDATE tags SET name = 'unheard' WHERE id = 1;"
        ))
        .await
        .unwrap();
    hub.check_capture().await.unwrap();
    assert!(hub.stats().capture_problems > before);
    let m = drain::<Tag, Tag, _>(&hub, &f.sql, TAG_SENTINEL, &mut sub, &mut tags).await;
    assert!(schema_changed(&m, "tags", "rewritten"), "{m:?}");
    assert_eq!(
        tags_view(&tags),
        tags_view(&fresh_tags(&hub, &["posts"]).await)
    );

    // someone drops it, and its triggers with it
    f.sql
        .batch_execute(&format!(
            "DROP FUNCTION {function} CASCADE; UPDATE tags SET name = 'unheard too' WHERE id = 2;"
        ))
        .await
        .unwrap();
    hub.check_capture().await.unwrap();
    let m = drain::<Tag, Tag, _>(&hub, &f.sql, TAG_SENTINEL, &mut sub, &mut tags).await;
    assert!(schema_changed(&m, "tags", "missing"), "{m:?}");
    assert_eq!(
        tags_view(&tags),
        tags_view(&fresh_tags(&hub, &["posts"]).await)
    );
    // repaired: the next change is heard again, and all is well
    f.sql
        .batch_execute("UPDATE tags SET name = 'heard' WHERE id = 2")
        .await
        .unwrap();
    let m = drain::<Tag, Tag, _>(&hub, &f.sql, TAG_SENTINEL, &mut sub, &mut tags).await;
    assert_eq!(resyncs(&m), Vec::<&ResyncReason>::new());
    assert_eq!(
        tags_view(&tags),
        tags_view(&fresh_tags(&hub, &["posts"]).await)
    );
    assert_eq!(hub.check_capture().await.unwrap(), vec![]);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_hub_that_does_not_install_reports_a_dropped_function_until_it_is_back() {
    let f = seeded().await;
    let installer = hub(f.db.url())
        .watch::<Tag>(NO_PRELOADS)
        .start()
        .await
        .unwrap();
    installer.shutdown().await;
    let hub = hub(f.db.url())
        .watch::<Tag>(NO_PRELOADS)
        .install_triggers(false)
        .start()
        .await
        .unwrap();
    assert_eq!(hub.capture_health(), vec![]);
    let (mut tags, mut sub) = hold_tags(&hub, &[]).await;
    let (function, _, _, _) = installed(&hub, "tags", "rowsync");
    f.sql
        .batch_execute(&format!(
            "DROP FUNCTION {function} CASCADE; UPDATE tags SET name = 'unheard' WHERE id = 1;"
        ))
        .await
        .unwrap();
    // every check says so, and resyncs, until capture is back; the problems count once
    let first = hub.check_capture().await.unwrap();
    let second = hub.check_capture().await.unwrap();
    assert!(!first.is_empty());
    assert_eq!(first, second);
    assert_eq!(hub.capture_health(), first);
    assert_eq!(hub.stats().capture_problems, first.len() as u64);
    let text: Vec<String> = first.iter().map(ToString::to_string).collect();
    assert!(text.iter().any(|p| p.contains("is missing")), "{text:?}");
    // another hub, which installs, puts it back; the next check says all is well
    let installer = hub_installing(f.db.url()).await;
    assert_eq!(hub.check_capture().await.unwrap(), vec![]);
    // capture is back: but the change made while it was gone must be seen, so the holders
    // were resynced (each check asks again; resyncs waiting to be taken are one reload)
    let m = drain::<Tag, Tag, _>(&hub, &f.sql, "tags", &mut sub, &mut tags).await;
    let reasons = resyncs(&m);
    assert!(!reasons.is_empty(), "{m:?}");
    assert!(schema_changed(&m, "tags", "is missing"), "{m:?}");
    assert_eq!(tags_view(&tags), tags_view(&fresh_tags(&hub, &[]).await));
    installer.shutdown().await;
    hub.shutdown().await;
}

async fn hub_installing(url: &str) -> Hub {
    hub(url).watch::<Tag>(NO_PRELOADS).start().await.unwrap()
}

#[tokio::test]
async fn the_periodic_check_notices_a_dropped_trigger_by_itself() {
    let f = seeded().await;
    let hub = Hub::builder(f.db.url())
        .watch::<Tag>(NO_PRELOADS)
        .capture_check_interval(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    let (mut tags, mut sub) = hold_tags(&hub, &[]).await;
    let (_, table, row_trigger, _) = installed(&hub, "tags", "rowsync");
    f.sql
        .batch_execute(&format!(
            "DROP TRIGGER {row_trigger} ON {table}; UPDATE tags SET name = 'unheard' WHERE id = 1;"
        ))
        .await
        .unwrap();
    wait_for_resync(
        &mut sub,
        &mut tags,
        |r| matches!(r, ResyncReason::SchemaChanged { detail, .. } if detail.contains("missing")),
    )
    .await;
    assert!(hub.stats().capture_problems >= 1);
    drain::<Tag, Tag, _>(&hub, &f.sql, TAG_SENTINEL, &mut sub, &mut tags).await;
    assert_eq!(tags_view(&tags), tags_view(&fresh_tags(&hub, &[]).await));
    assert_eq!(trigger_states(&f.sql, "tags").await.len(), 2, "reinstalled");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_reconnect_runs_the_check() {
    let f = seeded().await;
    let hub = hub(f.db.url())
        .watch::<Tag>(NO_PRELOADS)
        .start()
        .await
        .unwrap();
    let mut sub = hub.subscribe_table::<Tag>(NO_PRELOADS).unwrap();
    let mut tags: Vec<Tag> = hub.query::<Tag>().all().await.unwrap();
    let checks = hub.stats().capture_checks;
    assert!(checks >= 1, "a check at start");
    let pid = hub.listener_pid().await.expect("listening");
    f.sql
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    wait_for_resync(&mut sub, &mut tags, |r| *r == ResyncReason::Reconnected).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while hub.stats().capture_checks == checks {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no check after the reconnect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hub.shutdown().await;
}

/// The DDL hint (an event trigger, installed by a superuser's hub) runs the check at once:
/// this hub checks on its own only at start.
#[tokio::test]
async fn a_ddl_hint_runs_the_check_at_once() {
    let db = OwnDatabase::create("ddl_hint").await;
    let hub = hub(&db.url)
        .watch::<Tag>(NO_PRELOADS)
        .start()
        .await
        .unwrap();
    let events: i64 = db
        .sql
        .query_one(
            "SELECT count(*) FROM pg_event_trigger WHERE evtname = $1 AND evtenabled = 'A'",
            &[&EVENT_TRIGGER],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 1);
    let (mut tags, mut sub) = hold_tags(&hub, &[]).await;
    let (_, table, row_trigger, _) = installed(&hub, "tags", "rowsync");
    db.sql
        .batch_execute(&format!(
            "ALTER TABLE {table} DISABLE TRIGGER {row_trigger}"
        ))
        .await
        .unwrap();
    wait_for_resync(
        &mut sub,
        &mut tags,
        |r| matches!(r, ResyncReason::SchemaChanged { detail, .. } if detail.contains("disabled")),
    )
    .await;
    drain::<Tag, Tag, _>(&hub, &db.sql, TAG_SENTINEL, &mut sub, &mut tags).await;
    assert_eq!(tags_view(&tags), tags_view(&fresh_tags(&hub, &[]).await));
    hub.shutdown().await;
    db.drop().await;
}

// ---------------------------------------------------------------------------------------
// Case 3: TRUNCATE

#[tokio::test]
async fn truncate_resyncs_the_holders_of_the_table() {
    let f = seeded().await;
    let hub = hub(f.db.url())
        .watch::<Tag>(["posts"])
        .start()
        .await
        .unwrap();
    let (mut tags, mut sub) = hold_tags(&hub, &["posts"]).await;
    f.sql.batch_execute("TRUNCATE posts_tags").await.unwrap();
    let m = drain::<Tag, Tag, _>(&hub, &f.sql, TAG_SENTINEL, &mut sub, &mut tags).await;
    assert!(
        resyncs(&m)
            .iter()
            .any(|r| matches!(r, ResyncReason::Truncated { table } if table.name == "posts_tags")),
        "{m:?}"
    );
    assert_eq!(
        tags_view(&tags),
        tags_view(&fresh_tags(&hub, &["posts"]).await)
    );
    assert!(tags.iter().all(|t| t.posts.loaded().unwrap().is_empty()));
    hub.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Case 4: triggers that would not fire

#[tokio::test]
async fn writes_under_session_replication_role_replica_are_captured() {
    let db = OwnDatabase::create("replica_role").await;
    let hub = hub(&db.url).watch::<Tag>(["posts"]).start().await.unwrap();
    assert_eq!(
        trigger_states(&db.sql, "tags")
            .await
            .iter()
            .map(|(_, e)| e.as_str())
            .collect::<Vec<_>>(),
        ["A", "A"],
        "both triggers are ENABLE ALWAYS"
    );
    let (mut tags, mut sub) = hold_tags(&hub, &["posts"]).await;
    db.sql
        .batch_execute(
            "SET session_replication_role = replica;
             UPDATE tags SET name = 'replicated' WHERE id = 1;
             INSERT INTO tags VALUES (90, 'replica');
             INSERT INTO posts_tags VALUES (2, 90);",
        )
        .await
        .unwrap();
    let m = drain::<Tag, Tag, _>(&hub, &db.sql, TAG_SENTINEL, &mut sub, &mut tags).await;
    assert_eq!(resyncs(&m), Vec::<&ResyncReason>::new());
    assert_eq!(
        tags_view(&tags),
        tags_view(&fresh_tags(&hub, &["posts"]).await)
    );
    hub.shutdown().await;
    db.drop().await;
}

#[tokio::test]
async fn triggers_disabled_and_enabled_again_around_writes_end_in_a_resync() {
    let db = OwnDatabase::create("disable_all").await;
    let hub = hub(&db.url)
        .watch::<Tag>(NO_PRELOADS)
        .start()
        .await
        .unwrap();
    let (mut tags, mut sub) = hold_tags(&hub, &[]).await;
    for sql in [
        "ALTER TABLE tags DISABLE TRIGGER ALL",
        "UPDATE tags SET name = 'unheard' WHERE id = 1",
        "INSERT INTO tags VALUES (91, 'unheard')",
        "ALTER TABLE tags ENABLE TRIGGER ALL",
    ] {
        db.sql.batch_execute(sql).await.unwrap();
    }
    // ENABLE TRIGGER ALL leaves ours firing in origin sessions only: found, and set back
    hub.check_capture().await.unwrap();
    let m = drain::<Tag, Tag, _>(&hub, &db.sql, TAG_SENTINEL, &mut sub, &mut tags).await;
    assert!(
        schema_changed(&m, "tags", "ENABLE ALWAYS") || schema_changed(&m, "tags", "disabled"),
        "{m:?}"
    );
    assert_eq!(tags_view(&tags), tags_view(&fresh_tags(&hub, &[]).await));
    assert_eq!(
        trigger_states(&db.sql, "tags")
            .await
            .iter()
            .map(|(_, e)| e.as_str())
            .collect::<Vec<_>>(),
        ["A", "A"]
    );
    hub.shutdown().await;
    db.drop().await;
}

/// Disabled and set back to ALWAYS in one transaction: the catalog looks as before, but the
/// trigger's row was written, which the check notices.
#[tokio::test]
async fn a_trigger_disabled_and_enabled_again_in_one_transaction_is_noticed() {
    let f = seeded().await;
    let hub = hub(f.db.url())
        .watch::<Tag>(NO_PRELOADS)
        .start()
        .await
        .unwrap();
    let (mut tags, mut sub) = hold_tags(&hub, &[]).await;
    let (_, table, row_trigger, _) = installed(&hub, "tags", "rowsync");
    f.sql
        .batch_execute(&format!(
            "BEGIN;
             ALTER TABLE {table} DISABLE TRIGGER {row_trigger};
             UPDATE tags SET name = 'unheard' WHERE id = 1;
             ALTER TABLE {table} ENABLE ALWAYS TRIGGER {row_trigger};
             COMMIT;"
        ))
        .await
        .unwrap();
    hub.check_capture().await.unwrap();
    let m = drain::<Tag, Tag, _>(&hub, &f.sql, TAG_SENTINEL, &mut sub, &mut tags).await;
    assert!(
        schema_changed(&m, "tags", "altered since the last check"),
        "{m:?}"
    );
    assert_eq!(tags_view(&tags), tags_view(&fresh_tags(&hub, &[]).await));
    hub.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Case 5: schema changes

#[tokio::test]
async fn renaming_a_routed_column_never_fails_a_writer_and_resyncs_its_holders() {
    let f = seeded().await;
    let hub = hub(f.db.url())
        .watch::<Person>(["posts"])
        .start()
        .await
        .unwrap();
    let (mut people, mut sub) = hold_people(&hub, &["posts"]).await;
    f.sql
        .batch_execute(
            "ALTER TABLE posts RENAME COLUMN person_id TO owner_id;
             INSERT INTO posts (id, name, owner_id) VALUES (40, 'written', 1);
             UPDATE posts SET owner_id = 2 WHERE id = 1;",
        )
        .await
        .expect("writers are never failed by capture");
    let problems = hub.check_capture().await.unwrap();
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|p| p.contains("person_id") && p.contains("route")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|p| p.contains("mapped column person_id")),
        "{text:?}"
    );
    f.sql
        .batch_execute("ALTER TABLE posts RENAME COLUMN owner_id TO person_id")
        .await
        .unwrap();
    assert_eq!(hub.check_capture().await.unwrap(), vec![]);
    let m = drain::<Person, Person, _>(&hub, &f.sql, PERSON_SENTINEL, &mut sub, &mut people).await;
    assert!(schema_changed(&m, "posts", "person_id"), "{m:?}");
    assert_eq!(people, fresh_people(&hub, &["posts"]).await);
    assert!(people[0].posts.loaded().unwrap().iter().any(|p| p.id == 40));
    hub.shutdown().await;
}

#[tokio::test]
async fn renaming_a_mapped_column_is_found_by_the_check_and_resyncs_its_holders() {
    let f = seeded().await;
    let hub = hub(f.db.url())
        .watch::<Tag>(NO_PRELOADS)
        .start()
        .await
        .unwrap();
    let (mut tags, mut sub) = hold_tags(&hub, &[]).await;
    f.sql
        .batch_execute("ALTER TABLE tags RENAME COLUMN name TO title")
        .await
        .unwrap();
    let problems = hub.check_capture().await.unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].detail.contains("mapped column name"),
        "{problems:?}"
    );
    f.sql
        .batch_execute(
            "UPDATE tags SET title = 'while renamed' WHERE id = 2;
             ALTER TABLE tags RENAME COLUMN title TO name;",
        )
        .await
        .unwrap();
    assert_eq!(hub.check_capture().await.unwrap(), vec![]);
    let m = drain::<Tag, Tag, _>(&hub, &f.sql, TAG_SENTINEL, &mut sub, &mut tags).await;
    // the resync the check asked for while the column was renamed is taken after it is
    // back (resyncs waiting to be taken are one reload), so the reload succeeds
    assert!(schema_changed(&m, "tags", "mapped column name"), "{m:?}");
    assert_eq!(tags_view(&tags), tags_view(&fresh_tags(&hub, &[]).await));
    hub.shutdown().await;
}

#[tokio::test]
async fn a_table_dropped_and_created_again_is_found_reinstalled_and_resynced() {
    let f = seeded().await;
    let hub = hub(f.db.url())
        .watch::<Tag>(NO_PRELOADS)
        .start()
        .await
        .unwrap();
    let (mut tags, mut sub) = hold_tags(&hub, &[]).await;
    f.sql
        .batch_execute(
            "DROP TABLE tags CASCADE;
             CREATE TABLE tags (id bigserial PRIMARY KEY, name text NOT NULL);
             INSERT INTO tags VALUES (1, 'reborn'), (3, 'unused');",
        )
        .await
        .unwrap();
    hub.check_capture().await.unwrap();
    assert_eq!(trigger_states(&f.sql, "tags").await.len(), 2, "reinstalled");
    f.sql
        .batch_execute("UPDATE tags SET name = 'heard' WHERE id = 1")
        .await
        .unwrap();
    let m = drain::<Tag, Tag, _>(&hub, &f.sql, TAG_SENTINEL, &mut sub, &mut tags).await;
    assert!(schema_changed(&m, "tags", ""), "{m:?}");
    assert_eq!(tags_view(&tags), tags_view(&fresh_tags(&hub, &[]).await));
    assert_eq!(tags.iter().find(|t| t.id == 1).unwrap().name, "heard");
    assert_eq!(hub.check_capture().await.unwrap(), vec![]);
    hub.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Case 6: a table found through the search path

#[tokio::test]
async fn a_table_found_through_the_search_path_is_captured_by_its_real_schema() {
    let f = seeded().await;
    f.sql
        .batch_execute(&format!(
            "CREATE SCHEMA tenant;
             CREATE TABLE tenant.gadgets (id bigint PRIMARY KEY, name text NOT NULL);
             INSERT INTO tenant.gadgets VALUES (1, 'one'), (3, 'sentinel');
             ALTER DATABASE {} SET search_path = tenant, public;",
            quote_ident(f.db.name())
        ))
        .await
        .unwrap();
    let hub = hub(f.db.url())
        .watch::<Gadget>(NO_PRELOADS)
        .start()
        .await
        .unwrap();
    let plan = hub.plan().tables().next().unwrap().clone();
    assert_eq!(plan.pg_schema(), "tenant");
    let mut gadgets: Vec<Gadget> = hub.query::<Gadget>().all().await.unwrap();
    let mut sub = hub.subscribe_table::<Gadget>(NO_PRELOADS).unwrap();
    f.sql
        .batch_execute(
            "INSERT INTO tenant.gadgets VALUES (2, 'two');
             UPDATE tenant.gadgets SET name = 'uno' WHERE id = 1;",
        )
        .await
        .unwrap();
    let m =
        drain::<Gadget, Gadget, _>(&hub, &f.sql, "tenant.gadgets", &mut sub, &mut gadgets).await;
    assert_eq!(resyncs(&m), Vec::<&ResyncReason>::new());
    gadgets.sort_by_key(|g| g.id);
    let mut fresh = hub.query::<Gadget>().all().await.unwrap();
    fresh.sort_by_key(|g| g.id);
    assert_eq!(gadgets, fresh);
    assert_eq!(hub.stats().unknown_tables, 0);
    let function_schema: String = f
        .sql
        .query_one(
            "SELECT pronamespace::regnamespace::text FROM pg_proc WHERE proname = $1",
            &[&function_name(&plan, "rowsync")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(function_schema, "tenant");
    hub.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Case 7: a writer without EXECUTE on our functions

#[tokio::test]
async fn a_role_that_may_only_write_fires_the_triggers_without_execute_rights() {
    let db = OwnDatabase::create("writer_role").await;
    let role = format!("rowsync_writer_{}", std::process::id());
    db.sql
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN;
             GRANT UPDATE, SELECT ON tags TO {role};"
        ))
        .await
        .unwrap();
    let hub = hub(&db.url)
        .watch::<Tag>(NO_PRELOADS)
        .start()
        .await
        .unwrap();
    let (mut tags, mut sub) = hold_tags(&hub, &[]).await;
    let server = rowsync_testdb::throwaway().await.unwrap();
    let writer_url = server.url_for(&db.name).replacen(
        "postgres://postgres@",
        &format!("postgres://{role}@"),
        1,
    );
    let writer = connect(&writer_url).await;
    writer
        .batch_execute("UPDATE tags SET name = 'by a writer' WHERE id = 1")
        .await
        .expect("no EXECUTE needed to fire a trigger");
    let m = drain::<Tag, Tag, _>(&hub, &db.sql, TAG_SENTINEL, &mut sub, &mut tags).await;
    assert_eq!(resyncs(&m), Vec::<&ResyncReason>::new());
    assert_eq!(tags_view(&tags), tags_view(&fresh_tags(&hub, &[]).await));
    drop(writer);
    hub.shutdown().await;
    db.drop().await;
    let admin = connect(server.url()).await;
    admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Case 8: payloads of another format

#[tokio::test]
async fn a_payload_of_an_unknown_format_resyncs_the_holders_of_its_table() {
    let f = seeded().await;
    let hub = hub(f.db.url())
        .watch::<Tag>(NO_PRELOADS)
        .start()
        .await
        .unwrap();
    let (mut tags, mut sub) = hold_tags(&hub, &[]).await;
    f.sql
        .batch_execute(
            r#"SELECT pg_notify('rowsync', '{"v":3,"o":"I","s":"public","t":"tags","x":"1","i":1}');
               SELECT pg_notify('rowsync', '{"o":"I","s":"public","t":"tags","x":"1","k":["1"],"n":[]}');"#,
        )
        .await
        .unwrap();
    let m = drain::<Tag, Tag, _>(&hub, &f.sql, TAG_SENTINEL, &mut sub, &mut tags).await;
    let reasons = resyncs(&m);
    assert_eq!(
        reasons.len(),
        1,
        "the version 1 payload is only counted: {reasons:?}"
    );
    assert!(
        matches!(reasons[0], ResyncReason::Unreadable { table, error }
            if table.name == "tags" && error.contains("format 3")),
        "{reasons:?}"
    );
    assert_eq!(hub.stats().unsupported_payloads, 2);
    assert_eq!(tags_view(&tags), tags_view(&fresh_tags(&hub, &[]).await));
    hub.shutdown().await;
}
