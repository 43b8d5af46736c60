//! Who sees what: access contexts under real row-level security, changes that respect them,
//! and reads shared per context.

mod oracle;
mod policy_inputs;
mod rls;
mod scope;

use rowsync::{Access, Assoc, Hub, Schema};

use crate::support::{fixture, with_capture, Fixture};

/// Members of tenants, their notes, the notes' tags: every table carries its tenant.
#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "t_members")]
pub struct Member {
    pub id: i64,
    pub tenant_id: i64,
    pub name: String,
    #[rowsync(has_many(Note, foreign_key = "member_id", order_by = "id"))]
    pub notes: Assoc<Vec<Note>>,
}

#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "t_notes")]
pub struct Note {
    pub id: i64,
    pub tenant_id: i64,
    pub member_id: Option<i64>,
    pub title: String,
    #[rowsync(belongs_to(Member, foreign_key = "member_id"))]
    pub member: Assoc<Option<Box<Member>>>,
    #[rowsync(many_to_many(Tag, join_through = "t_notes_tags", join_keys("note_id", "tag_id")))]
    pub tags: Assoc<Vec<Tag>>,
}

#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "t_tags")]
pub struct Tag {
    pub id: i64,
    pub tenant_id: i64,
    pub name: String,
}

/// Who shares with whom: tenant `viewer` sees what tenant `owner` sees of its own.
#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "t_shares")]
pub struct Share {
    #[rowsync(primary_key)]
    pub owner: i64,
    #[rowsync(primary_key)]
    pub viewer: i64,
}

/// The shape holders load: two levels under the members.
pub const SHAPE: [&str; 1] = ["notes.tags"];

/// A second shape: notes with the member they belong to (a parent a context may not see).
pub const NOTE_SHAPE: [&str; 2] = ["member", "tags"];

/// The tables, one policy per table (`tenant_id = current_setting('app.tenant_id')`, or a
/// tenant that shares with it in `t_shares`), a role `app` that the policies bind (no
/// superuser, no BYPASSRLS) and seed rows of tenants 7 and 8 (with rows of one tenant under
/// the other's members and notes).
pub fn schema_sql(app: &str) -> String {
    format!(
        "
    CREATE TABLE t_members (id bigint PRIMARY KEY, tenant_id bigint NOT NULL, name text NOT NULL);
    CREATE TABLE t_notes (id bigint PRIMARY KEY, tenant_id bigint NOT NULL,
                          member_id bigint, title text NOT NULL);
    CREATE TABLE t_tags (id bigint PRIMARY KEY, tenant_id bigint NOT NULL, name text NOT NULL);
    CREATE TABLE t_notes_tags (note_id bigint NOT NULL, tag_id bigint NOT NULL,
                               PRIMARY KEY (note_id, tag_id));
    CREATE TABLE t_shares (owner bigint NOT NULL, viewer bigint NOT NULL,
                           PRIMARY KEY (owner, viewer));
    CREATE ROLE {app} NOLOGIN;
    GRANT SELECT ON t_members, t_notes, t_tags, t_notes_tags, t_shares TO {app};
    ALTER TABLE t_members ENABLE ROW LEVEL SECURITY;
    ALTER TABLE t_notes ENABLE ROW LEVEL SECURITY;
    ALTER TABLE t_tags ENABLE ROW LEVEL SECURITY;
    CREATE POLICY tenant ON t_members USING (tenant_id = current_setting('app.tenant_id')::bigint
        OR tenant_id IN (SELECT owner FROM t_shares
                         WHERE viewer = current_setting('app.tenant_id')::bigint));
    CREATE POLICY tenant ON t_notes USING (tenant_id = current_setting('app.tenant_id')::bigint
        OR tenant_id IN (SELECT owner FROM t_shares
                         WHERE viewer = current_setting('app.tenant_id')::bigint));
    CREATE POLICY tenant ON t_tags USING (tenant_id = current_setting('app.tenant_id')::bigint);
    INSERT INTO t_members VALUES (1, 7, 'ann'), (2, 7, 'abe'), (3, 8, 'bob');
    INSERT INTO t_notes VALUES (10, 7, 1, 'a1'), (11, 7, 1, 'a2'), (12, 8, 1, 'leak'),
                               (13, 8, 3, 'b1'), (14, 7, 2, 'a3');
    INSERT INTO t_tags VALUES (100, 7, 'red'), (101, 8, 'blue'), (102, 7, 'green');
    INSERT INTO t_notes_tags VALUES (10, 100), (10, 101), (11, 102), (13, 101), (12, 100);
    "
    )
}

/// A database with [`schema_sql`] and the name of its `app` role (roles are per cluster:
/// each test database has its own).
pub async fn tenants() -> (Fixture, String) {
    let f = fixture().await;
    let app = format!("app_{}", f.db.name());
    f.sql
        .batch_execute(&schema_sql(&app))
        .await
        .expect("tenant schema");
    (f, app)
}

/// A hub watching the tenant tables.
pub async fn tenant_hub(f: &Fixture) -> Hub {
    with_capture(
        Hub::builder(f.db.url())
            .watch::<Member>(SHAPE)
            .policy_table::<Share>(),
        f,
    )
    .start()
    .await
    .expect("hub starts")
}

/// Tenant `tenant` acting as `app`.
pub fn tenant(app: &str, tenant: i64) -> Access {
    Access::new()
        .role(app)
        .setting("app.tenant_id", tenant.to_string())
}

/// A live query of every member with [`SHAPE`], under `access`.
pub async fn live_members(hub: &Hub, access: &Access) -> rowsync::Live<Vec<Member>> {
    hub.live::<Member>()
        .preload(SHAPE)
        .access(access.clone())
        .all()
        .await
        .expect("the live query loads")
}

/// What a fresh load under `access` gives: the oracle every holder is compared with.
pub async fn fresh(f: &Fixture, access: &Access) -> Vec<Member> {
    f.rowsync
        .query::<Member>()
        .preload(SHAPE)
        .access(access.clone())
        .all()
        .await
        .expect("fresh load under the context")
}
