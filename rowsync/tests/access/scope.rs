//! Scopes without row-level security: a filter on a column of every table a holder reaches,
//! checked in memory.

use rowsync::{Access, AccessError, Filter, HubError, LoadError};

use super::rls::{check, STEPS};
use super::{fresh, tenant_hub, tenants, Member, SHAPE};

fn scope(tenant: i64) -> Access {
    Access::new().scope(Filter::eq("tenant_id", tenant))
}

/// Every row held, at every depth, is the tenant's.
fn only_tenant(members: &[Member], tenant: i64) {
    for m in members {
        assert_eq!(m.tenant_id, tenant, "member {}", m.id);
        for n in m.notes.loaded().into_iter().flatten() {
            assert_eq!(n.tenant_id, tenant, "note {}", n.id);
            for t in n.tags.loaded().into_iter().flatten() {
                assert_eq!(t.tenant_id, tenant, "tag {}", t.id);
            }
        }
    }
}

#[tokio::test]
async fn a_scope_keeps_each_holder_to_its_tenant_with_no_read_of_its_own() {
    // the hub's role is a superuser here: row-level security does not apply, the scope does
    let (f, _) = tenants().await;
    let hub = tenant_hub(&f).await;
    let seven = fresh(&f, &scope(7)).await;
    assert_eq!(seven.iter().map(|m| m.id).collect::<Vec<_>>(), [1, 2]);
    only_tenant(&seven, 7);

    let mut values = Vec::new();
    for t in [7, 8] {
        let live = hub
            .live::<Member>()
            .preload(SHAPE)
            .access(scope(t))
            .all()
            .await
            .unwrap();
        values.push((scope(t), live));
    }
    check(&f, &mut values, "loaded").await;
    for (step, sql) in STEPS {
        f.sql.batch_execute(sql).await.unwrap();
        check(&f, &mut values, step).await;
        for (access, live) in &values {
            let Some(Filter::Eq(_, rowsync::Value::I64(t))) = access.scope_filter() else {
                unreachable!("scopes of this test are tenant_id = n");
            };
            only_tenant(live, *t);
        }
    }
}

#[tokio::test]
async fn scoped_holders_read_nothing_more_than_plain_ones() {
    let (f, _) = tenants().await;
    let hub = tenant_hub(&f).await;
    let mut plain = hub.live::<Member>().preload(SHAPE).all().await.unwrap();
    f.sql
        .batch_execute("UPDATE t_notes SET title = 'one' WHERE id = 10")
        .await
        .unwrap();
    plain.catch_up().await.unwrap();
    let before = hub.stats().rows_loaded;
    f.sql
        .batch_execute("UPDATE t_notes SET title = 'two' WHERE id = 10")
        .await
        .unwrap();
    plain.catch_up().await.unwrap();
    let alone = hub.stats().rows_loaded - before;

    let mut scoped = Vec::new();
    for t in [7, 8, 7, 8] {
        scoped.push(
            hub.live::<Member>()
                .preload(SHAPE)
                .access(scope(t))
                .all()
                .await
                .unwrap(),
        );
    }
    let before = hub.stats().rows_loaded;
    f.sql
        .batch_execute("UPDATE t_notes SET title = 'three' WHERE id = 10")
        .await
        .unwrap();
    plain.catch_up().await.unwrap();
    for live in &mut scoped {
        live.catch_up().await.unwrap();
    }
    assert_eq!(hub.stats().rows_loaded - before, alone);
}

#[tokio::test]
async fn a_scope_on_a_missing_column_is_an_error_when_subscribing() {
    let (f, _) = tenants().await;
    let hub = tenant_hub(&f).await;
    let wrong = Access::new().scope(Filter::eq("org_id", 7i64));
    let made = hub.subscribe_table_as::<Member>(&wrong, SHAPE).await;
    assert!(
        matches!(made, Err(HubError::Access(AccessError::ScopeColumn { schema: "Member", ref column, .. })) if column == "org_id"),
        "{made:?}"
    );
    let live = hub
        .live::<Member>()
        .preload(SHAPE)
        .access(wrong.clone())
        .all()
        .await;
    assert!(
        matches!(live, Err(HubError::Access(AccessError::ScopeColumn { .. }))),
        "{:?}",
        live.err()
    );
    let loaded = f.rowsync.query::<Member>().access(wrong).all().await;
    assert!(
        matches!(
            loaded,
            Err(LoadError::Access(AccessError::ScopeColumn { .. }))
        ),
        "{loaded:?}"
    );
}
