//! Real row-level security: loads, errors, changes and shared reads under access contexts.

use std::time::Duration;

use rowsync::{Access, AccessError, HubError, Live, LoadError};
use tokio::time::timeout;

use super::{fresh, live_members, tenant, tenant_hub, tenants, Member, Note, SHAPE};
use crate::support::{replication, Fixture};

const WAIT: Duration = Duration::from_secs(10);

fn ids<T>(rows: &[T], id: impl Fn(&T) -> i64) -> Vec<i64> {
    rows.iter().map(id).collect()
}

#[tokio::test]
async fn a_load_under_a_context_sees_its_tenant_at_every_depth() {
    let (f, app) = tenants().await;
    let seven = fresh(&f, &tenant(&app, 7)).await;
    assert_eq!(ids(&seven, |m| m.id), [1, 2]);
    let ann = &seven[0];
    let notes = ann.notes.loaded().unwrap();
    assert_eq!(ids(notes, |n| n.id), [10, 11], "note 12 is tenant 8's");
    let tags = notes[0].tags.loaded().unwrap();
    assert_eq!(ids(tags, |t| t.id), [100], "tag 101 is tenant 8's");

    let eight = fresh(&f, &tenant(&app, 8)).await;
    assert_eq!(ids(&eight, |m| m.id), [3]);
    assert_eq!(ids(eight[0].notes.loaded().unwrap(), |n| n.id), [13]);

    // the connecting role (a superuser in tests) sees everything without a context
    let all = f
        .rowsync
        .query::<Member>()
        .preload(SHAPE)
        .all()
        .await
        .unwrap();
    assert_eq!(ids(&all, |m| m.id), [1, 2, 3]);
}

#[tokio::test]
async fn a_context_the_database_refuses_is_a_clear_error() {
    let (f, app) = tenants().await;
    let hub = tenant_hub(&f).await;
    let rows: Vec<Member> = Vec::new();

    let unknown = Access::new().role("no_such_role_anywhere");
    let made = hub.subscribe_as(&unknown, &rows, SHAPE).await;
    assert!(
        matches!(made, Err(HubError::Access(AccessError::UnknownRole { ref role })) if role == "no_such_role_anywhere"),
        "{made:?}"
    );
    let loaded = f
        .rowsync
        .query::<Member>()
        .access(unknown.clone())
        .all()
        .await;
    assert!(
        matches!(
            loaded,
            Err(LoadError::Access(AccessError::UnknownRole { .. }))
        ),
        "{loaded:?}"
    );
    let live = hub.live::<Member>().access(unknown).all().await;
    assert!(
        matches!(live, Err(HubError::Access(AccessError::UnknownRole { .. }))),
        "{:?}",
        live.err()
    );

    for bad in [
        "tenant",
        "role",
        "app.tenant-id",
        "app.x;drop table t_members",
    ] {
        let access = Access::new().role(&app).setting(bad, "7");
        let made = hub.subscribe_table_as::<Member>(&access, SHAPE).await;
        assert!(
            matches!(made, Err(HubError::Access(AccessError::InvalidSetting { ref name })) if name == bad),
            "{bad}: {made:?}"
        );
    }
    let message = AccessError::UnknownRole { role: "x".into() }.to_string();
    assert!(message.contains("CREATE ROLE"), "{message}");

    // a role that can log in but is not a member of `app`
    let stranger = format!("login_{}", f.db.name());
    f.sql
        .batch_execute(&format!(
            "CREATE ROLE {stranger} LOGIN; GRANT CONNECT ON DATABASE {} TO {stranger}",
            f.db.name()
        ))
        .await
        .unwrap();
    let url = f.db.url().replacen("postgres@", &format!("{stranger}@"), 1);
    let as_stranger = rowsync::Db::connect(&url).unwrap();
    let loaded = as_stranger
        .query::<Member>()
        .access(tenant(&app, 7))
        .all()
        .await;
    assert!(
        matches!(
            loaded,
            Err(LoadError::Access(AccessError::RoleNotGranted { .. }))
        ),
        "{loaded:?}"
    );

    // on a connection held outside a transaction, `SET LOCAL` would not hold
    let outside = rowsync::query::<Member>(&f.sql)
        .access(tenant(&app, 7))
        .all()
        .await;
    assert!(
        matches!(
            outside,
            Err(LoadError::Access(AccessError::NotInTransaction))
        ),
        "{outside:?}"
    );
    let mut client = f.db.connect().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let inside = rowsync::query::<Member>(&tx)
        .access(tenant(&app, 8))
        .all()
        .await
        .unwrap();
    assert_eq!(ids(&inside, |m| m.id), [3]);
}

/// Applies what every live value was sent until `f`'s writes so far, then checks each one
/// against a fresh load under its own context.
pub async fn check(f: &Fixture, values: &mut [(Access, Live<Vec<Member>>)], step: &str) {
    for (access, live) in values.iter_mut() {
        timeout(WAIT, live.catch_up())
            .await
            .unwrap_or_else(|_| panic!("{step}: catch-up timed out"))
            .unwrap_or_else(|e| panic!("{step}: {e}"));
        let expected = fresh(f, access).await;
        assert_eq!(**live, expected, "{step}: holder under {access:?}");
    }
}

#[tokio::test]
async fn changes_reach_holders_only_as_their_context_sees_them() {
    let (f, app) = tenants().await;
    let hub = tenant_hub(&f).await;
    let mut values = Vec::new();
    for t in [7, 8, 7] {
        let access = tenant(&app, t);
        let live = live_members(&hub, &access).await;
        values.push((access, live));
    }
    check(&f, &mut values, "loaded").await;
    for (step, sql) in STEPS {
        f.sql.batch_execute(sql).await.unwrap();
        check(&f, &mut values, step).await;
    }
}

/// Writes across tenants: rows moving in and out of a tenant at every depth.
pub const STEPS: [(&str, &str); 13] = [
    (
        "another tenant's note under a held member",
        "UPDATE t_notes SET title = 'x' WHERE id = 12",
    ),
    (
        "a note leaves its tenant",
        "UPDATE t_notes SET tenant_id = 8 WHERE id = 11",
    ),
    (
        "a note joins a tenant",
        "UPDATE t_notes SET tenant_id = 7 WHERE id = 12",
    ),
    (
        "a nested tag leaves",
        "UPDATE t_tags SET tenant_id = 8 WHERE id = 100",
    ),
    (
        "a nested tag comes back",
        "UPDATE t_tags SET tenant_id = 7, name = 'crimson' WHERE id = 100",
    ),
    (
        "notes inserted for both tenants",
        "INSERT INTO t_notes VALUES (15, 8, 2, 'x'), (16, 7, 2, 'y')",
    ),
    (
        "a link to another tenant's tag",
        "INSERT INTO t_notes_tags VALUES (14, 101), (16, 102)",
    ),
    (
        "members inserted",
        "INSERT INTO t_members VALUES (4, 7, 'amy'), (5, 8, 'bea')",
    ),
    (
        "tenant 8 shares with tenant 7 (a policy change)",
        "INSERT INTO t_shares VALUES (8, 7)",
    ),
    (
        "a member moves tenant",
        "UPDATE t_members SET tenant_id = 8 WHERE id = 2",
    ),
    (
        "and back",
        "UPDATE t_members SET tenant_id = 7 WHERE id = 2",
    ),
    ("the share revoked", "DELETE FROM t_shares"),
    (
        "a visible note deleted",
        "DELETE FROM t_notes WHERE id = 10",
    ),
];

#[tokio::test]
async fn holders_sharing_a_context_share_each_read() {
    let (f, app) = tenants().await;
    let hub = tenant_hub(&f).await;
    // the same change, read by holders without a context, then by two contexts as well
    let mut plain = Vec::new();
    for _ in 0..10 {
        plain.push(hub.live::<Member>().preload(SHAPE).all().await.unwrap());
    }
    let write = |title: &'static str| {
        let sql = &f.sql;
        async move {
            sql.execute("UPDATE t_notes SET title = $1 WHERE id = 10", &[&title])
                .await
                .unwrap();
        }
    };
    let before = hub.stats().rows_loaded;
    write("one").await;
    for live in &mut plain {
        live.catch_up().await.unwrap();
    }
    // one read of the row (none when the replication source carried it)
    let alone = hub.stats().rows_loaded - before;

    let mut held = Vec::new();
    for t in [7, 8] {
        for _ in 0..10 {
            let live = hub
                .live::<Member>()
                .preload(SHAPE)
                .access(tenant(&app, t))
                .all()
                .await
                .unwrap();
            held.push(live);
        }
    }
    let before = hub.stats().rows_loaded;
    write("two").await;
    for live in plain.iter_mut().chain(&mut held) {
        live.catch_up().await.unwrap();
    }
    let shared = hub.stats().rows_loaded - before;
    // tenant 8's holders do not hold note 10: only tenant 7's context reads it, once for
    // all ten of its holders (a row the replication source carried serves the hub's own
    // role only)
    let under_context = shared - alone;
    assert_eq!(
        under_context,
        alone.max(1),
        "reads: {alone} without contexts, {shared} with them"
    );
    assert_eq!(held[0].notes_title(), Some("two"));
}

trait Title {
    fn notes_title(&self) -> Option<&str>;
}

impl Title for Live<Vec<Member>> {
    fn notes_title(&self) -> Option<&str> {
        self.iter()
            .flat_map(|m| m.notes.loaded().into_iter().flatten())
            .find(|n| n.id == 10)
            .map(|n| n.title.as_str())
    }
}

#[tokio::test]
async fn a_burst_is_read_once_per_table_and_context() {
    let (f, app) = tenants().await;
    let hub = tenant_hub(&f).await;
    let mut held = Vec::new();
    for _ in 0..10 {
        let live = hub
            .live::<Member>()
            .preload(SHAPE)
            .access(tenant(&app, 7))
            .all()
            .await
            .unwrap();
        held.push(live);
    }
    let before = hub.stats().rows_loaded;
    // one transaction, three held notes of tenant 7 changed
    f.sql
        .batch_execute(
            "BEGIN; UPDATE t_notes SET title = 'u' WHERE id IN (10, 11); \
             UPDATE t_notes SET title = 'v' WHERE id = 14; COMMIT;",
        )
        .await
        .unwrap();
    for live in &mut held {
        live.catch_up().await.unwrap();
        assert_eq!(**live, fresh(&f, &tenant(&app, 7)).await);
    }
    let reads = hub.stats().rows_loaded - before;
    assert_eq!(
        reads, 1,
        "three changes, ten holders, one context: one batched read"
    );
}

#[tokio::test]
async fn a_burst_of_deletes_is_read_once_per_table_and_context() {
    let (f, app) = tenants().await;
    f.sql
        .batch_execute("INSERT INTO t_notes VALUES (15, 8, 3, 'b2'), (16, 8, 3, 'b3')")
        .await
        .unwrap();
    let hub = tenant_hub(&f).await;
    let contexts = [tenant(&app, 7), tenant(&app, 8)];
    let mut held = Vec::new();
    for access in &contexts {
        for _ in 0..10 {
            let live = live_members(&hub, access).await;
            held.push((access.clone(), live));
        }
    }
    let before = hub.stats().rows_loaded;
    // one transaction: three notes each context holds, gone
    f.sql
        .batch_execute("DELETE FROM t_notes WHERE id IN (10, 11, 14, 13, 15, 16)")
        .await
        .unwrap();
    for (access, live) in &mut held {
        live.catch_up().await.unwrap();
        assert_eq!(**live, fresh(&f, access).await);
    }
    let reads = hub.stats().rows_loaded - before;
    // the replication source carries a delete: gone for every context, nothing to read
    let expected = if replication() {
        0
    } else {
        contexts.len() as u64
    };
    assert_eq!(
        reads, expected,
        "six deletes, twenty holders, two contexts: one batched read each"
    );
}

#[tokio::test]
async fn a_one_off_read_under_a_context_sees_what_it_may() {
    let (f, app) = tenants().await;
    let hub = tenant_hub(&f).await;
    let mut sub = hub
        .subscribe_to::<Note>(rowsync::Op::Updated, rowsync::Selector::row(12i64))
        .unwrap();
    // note 12 is tenant 8's, under tenant 7's member 1
    f.sql
        .batch_execute("UPDATE t_notes SET title = 'changed' WHERE id = 12")
        .await
        .unwrap();
    let Some(rowsync::Message::Change(change)) = timeout(WAIT, sub.next()).await.unwrap() else {
        panic!("expected the change of note 12");
    };
    let (seven, eight) = (tenant(&app, 7), tenant(&app, 8));
    let hidden = hub.get_as::<Note>(&seven, &change).await.unwrap();
    assert_eq!(hidden, None, "tenant 7 may not see note 12");
    let seen = hub.get_as::<Note>(&eight, &change).await.unwrap();
    assert_eq!(seen.map(|n| n.title).as_deref(), Some("changed"));
    // the preloads under the context too: member 1 is tenant 7's
    let with_member = hub
        .get_with_as::<Note>(&eight, &change, ["member"])
        .await
        .unwrap()
        .expect("tenant 8 sees note 12");
    assert_eq!(with_member.member.loaded(), Some(&None));
    // the hub's own role sees it all, as before
    let plain = hub.get::<Note>(&change).await.unwrap();
    assert_eq!(plain.map(|n| n.id), Some(12));
    // a scope is a context too
    let scoped = Access::new().scope(rowsync::Filter::eq("tenant_id", 7i64));
    assert_eq!(hub.get_as::<Note>(&scoped, &change).await.unwrap(), None);
}

/// The next message of `sub`, which must be a change.
async fn next_change(sub: &mut rowsync::Subscription) -> std::sync::Arc<rowsync::Change> {
    match timeout(WAIT, sub.next()).await {
        Ok(Some(rowsync::Message::Change(change))) => change,
        other => panic!("expected a change, got {other:?}"),
    }
}

#[tokio::test]
async fn a_subscriber_under_a_context_is_not_told_of_rows_it_cannot_see() {
    let (f, app) = tenants().await;
    let hub = tenant_hub(&f).await;
    let seven = tenant(&app, 7);
    let mut members = fresh(&f, &seven).await;
    let mut sub = hub.subscribe_as(&seven, &members, SHAPE).await.unwrap();
    // a change of tenant 8's tag (a holder under a context follows the tags whole) and a
    // tenant 8 note inserted under tenant 7's member 1 (routed by its foreign key): neither
    // row is tenant 7's to see, nor its key
    for sql in [
        "UPDATE t_tags SET name = 'navy' WHERE id = 101",
        "INSERT INTO t_notes VALUES (20, 8, 1, 'secret')",
        "UPDATE t_notes SET title = 'seen' WHERE id = 11",
    ] {
        f.sql.batch_execute(sql).await.unwrap();
    }
    let change = next_change(&mut sub).await;
    assert_eq!(
        (change.table.name, &change.key),
        ("t_notes", &rowsync::Key::from(11i64)),
        "the first change told is of tenant 7's own note"
    );
    sub.sync(&mut members, &rowsync::Message::Change(change))
        .await
        .unwrap();
    assert_eq!(members, fresh(&f, &seven).await);
    // a row held that the context stops seeing is still told, and leaves
    f.sql
        .batch_execute("UPDATE t_notes SET tenant_id = 8 WHERE id = 10")
        .await
        .unwrap();
    let change = next_change(&mut sub).await;
    assert_eq!(change.key, rowsync::Key::from(10i64));
    sub.sync(&mut members, &rowsync::Message::Change(change))
        .await
        .unwrap();
    assert_eq!(members, fresh(&f, &seven).await);
}
