//! What policies read: a table a policy on a watched table reads must be declared as a
//! policy table, or the hub does not start (its changes would go unheard).

use rowsync::{Hub, HubError};

use super::{fresh, live_members, tenant, tenants, Member, SHAPE};
use crate::support::with_capture;

#[tokio::test]
async fn a_policy_reading_an_undeclared_table_fails_start() {
    let (f, _app) = tenants().await;
    let started = with_capture(Hub::builder(f.db.url()).watch::<Member>(SHAPE), &f)
        .start()
        .await;
    let Err(HubError::UndeclaredPolicyInputs { inputs }) = &started else {
        panic!("expected the undeclared policy input, got {started:?}");
    };
    let found: Vec<(&str, &str, &str)> = inputs
        .iter()
        .map(|i| (i.policy.as_str(), i.table.as_str(), i.reads.as_str()))
        .collect();
    // t_tags has row-level security too, with a policy reading nothing else: not named
    assert_eq!(
        found,
        [
            ("tenant", "t_members", "t_shares"),
            ("tenant", "t_notes", "t_shares")
        ]
    );
    let message = started.unwrap_err().to_string();
    assert!(
        message.contains("policy `tenant` on t_notes reads t_shares")
            && message.contains("policy_table"),
        "{message}"
    );
}

#[tokio::test]
async fn a_policy_table_declared_by_name_starts_and_reloads_holders() {
    let (f, app) = tenants().await;
    let hub = with_capture(
        Hub::builder(f.db.url())
            .watch::<Member>(SHAPE)
            .policy_table_named("public.t_shares"),
        &f,
    )
    .start()
    .await
    .expect("a declared policy table lets the hub start");
    let seven = tenant(&app, 7);
    let mut live = live_members(&hub, &seven).await;
    assert_eq!(*live, fresh(&f, &seven).await);
    // tenant 8 shares with 7: 7 now sees 8's member, notes and (its own) tags
    f.sql
        .batch_execute("INSERT INTO t_shares VALUES (8, 7)")
        .await
        .unwrap();
    live.catch_up().await.unwrap();
    let now = fresh(&f, &seven).await;
    assert!(now.iter().any(|m| m.id == 3), "the share shows member 3");
    assert_eq!(*live, now);
}
