//! The isolation oracle: random writes across tenants (rows moving between tenants at every
//! depth, links, and a policy change: a tenant sharing with another and revoking it) while
//! holders of three contexts follow. After every transaction each holder equals a fresh load
//! under its own context; after every message, a holder applying messages one by one holds
//! no row its context could see neither before nor after the transaction (row-level
//! security), or no row outside its scope (scopes). Runs for both styles.
//!
//! `ROWSYNC_ACCESS_ORACLE_CASES` sets the number of cases per style (default 6).

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rowsync::{Access, Filter, Hub, Live, Message, Subscription};

use super::{fresh, tenant, tenant_hub, tenants, Member, Note, NOTE_SHAPE, SHAPE};
use crate::support::Fixture;

#[derive(Clone, Copy, Debug)]
enum Style {
    /// Row-level security policies and a role with `app.tenant_id`.
    Rls,
    /// `Access::scope(tenant_id = n)`, no policy involved (the hub is a superuser).
    Scope,
}

const TENANTS: [i64; 3] = [7, 8, 9];

fn statement() -> impl Strategy<Value = String> {
    let member = 1i64..=5;
    let note = 10i64..=16;
    let tag = 100i64..=103;
    let tenant = prop_oneof![Just(7i64), Just(8), Just(9)];
    let word = prop_oneof![Just("a"), Just("b"), Just("c")];
    prop_oneof![
        (member.clone(), tenant.clone(), word.clone()).prop_map(|(id, t, w)| format!(
            "INSERT INTO t_members VALUES ({id}, {t}, '{w}') ON CONFLICT DO NOTHING"
        )),
        (member.clone(), tenant.clone())
            .prop_map(|(id, t)| format!("UPDATE t_members SET tenant_id = {t} WHERE id = {id}")),
        (member.clone(), word.clone())
            .prop_map(|(id, w)| format!("UPDATE t_members SET name = '{w}' WHERE id = {id}")),
        member
            .clone()
            .prop_map(|id| format!("DELETE FROM t_members WHERE id = {id}")),
        (note.clone(), tenant.clone(), member.clone()).prop_map(|(id, t, m)| format!(
            "INSERT INTO t_notes VALUES ({id}, {t}, {m}, 'n') ON CONFLICT DO NOTHING"
        )),
        (note.clone(), tenant.clone())
            .prop_map(|(id, t)| format!("UPDATE t_notes SET tenant_id = {t} WHERE id = {id}")),
        (note.clone(), member.clone())
            .prop_map(|(id, m)| format!("UPDATE t_notes SET member_id = {m} WHERE id = {id}")),
        (note.clone(), word.clone())
            .prop_map(|(id, w)| format!("UPDATE t_notes SET title = '{w}' WHERE id = {id}")),
        note.clone()
            .prop_map(|id| format!("DELETE FROM t_notes WHERE id = {id}")),
        (tag.clone(), tenant.clone()).prop_map(|(id, t)| format!(
            "INSERT INTO t_tags VALUES ({id}, {t}, 't') ON CONFLICT DO NOTHING"
        )),
        (tag.clone(), tenant.clone())
            .prop_map(|(id, t)| format!("UPDATE t_tags SET tenant_id = {t} WHERE id = {id}")),
        (tag.clone(), word)
            .prop_map(|(id, w)| format!("UPDATE t_tags SET name = '{w}' WHERE id = {id}")),
        tag.clone()
            .prop_map(|id| format!("DELETE FROM t_tags WHERE id = {id}")),
        (note.clone(), tag.clone()).prop_map(|(n, t)| format!(
            "INSERT INTO t_notes_tags VALUES ({n}, {t}) ON CONFLICT DO NOTHING"
        )),
        (note, tag).prop_map(|(n, t)| format!(
            "DELETE FROM t_notes_tags WHERE note_id = {n} AND tag_id = {t}"
        )),
        (tenant.clone(), tenant.clone()).prop_map(|(o, v)| format!(
            "INSERT INTO t_shares VALUES ({o}, {v}) ON CONFLICT DO NOTHING"
        )),
        (tenant.clone(), tenant)
            .prop_map(|(o, v)| format!("DELETE FROM t_shares WHERE owner = {o} AND viewer = {v}")),
    ]
}

fn transactions() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop::collection::vec(statement(), 1..=4).prop_map(|stmts| stmts.join("; ")),
        1..=8,
    )
}

fn context(style: Style, app: &str, tenant_id: i64) -> Access {
    match style {
        Style::Rls => tenant(app, tenant_id),
        Style::Scope => Access::new().scope(Filter::eq("tenant_id", tenant_id)),
    }
}

/// Every row (table, id) the context may see now, whether or not a holder reaches it.
async fn visible(f: &Fixture, access: &Access) -> BTreeSet<(char, i64)> {
    let mut out = BTreeSet::new();
    for member in fresh_flat::<Member>(f, access).await {
        out.insert(('m', member.id));
    }
    for note in fresh_flat::<super::Note>(f, access).await {
        out.insert(('n', note.id));
    }
    for tag in fresh_flat::<super::Tag>(f, access).await {
        out.insert(('t', tag.id));
    }
    out
}

async fn fresh_flat<S: rowsync::Schema>(f: &Fixture, access: &Access) -> Vec<S> {
    f.rowsync
        .query::<S>()
        .access(access.clone())
        .all()
        .await
        .expect("flat load under the context")
}

/// Every row a holder holds, at any depth.
fn held(members: &[Member]) -> BTreeSet<(char, i64)> {
    let mut out = BTreeSet::new();
    for m in members {
        out.insert(('m', m.id));
        for n in m.notes.loaded().into_iter().flatten() {
            out.insert(('n', n.id));
            for t in n.tags.loaded().into_iter().flatten() {
                out.insert(('t', t.id));
            }
        }
    }
    out
}

/// The rows held, at any depth, whose own tenant is not `tenant`.
fn outside_tenant(members: &[Member], tenant: i64) -> Vec<(char, i64)> {
    let mut out = Vec::new();
    for m in members {
        if m.tenant_id != tenant {
            out.push(('m', m.id));
        }
        for n in m.notes.loaded().into_iter().flatten() {
            if n.tenant_id != tenant {
                out.push(('n', n.id));
            }
            for t in n.tags.loaded().into_iter().flatten() {
                if t.tenant_id != tenant {
                    out.push(('t', t.id));
                }
            }
        }
    }
    out
}

struct ByHand {
    access: Access,
    tenant: i64,
    data: Vec<Member>,
    sub: Subscription,
}

async fn run(style: Style, transactions: Vec<String>) -> Result<(), String> {
    let (f, app) = tenants().await;
    let hub: Hub = tenant_hub(&f).await;
    let mut lives: Vec<(Access, Live<Vec<Member>>)> = Vec::new();
    let mut by_hand: Vec<ByHand> = Vec::new();
    let mut notes: Vec<(Access, Live<Vec<Note>>)> = Vec::new();
    for t in TENANTS {
        let access = context(style, &app, t);
        let live = hub
            .live::<Note>()
            .preload(NOTE_SHAPE)
            .access(access.clone())
            .all()
            .await
            .map_err(|e| e.to_string())?;
        notes.push((access, live));
    }
    // two live values share tenant 7's context
    for t in TENANTS.into_iter().chain([7]) {
        let access = context(style, &app, t);
        let live = hub
            .live::<Member>()
            .preload(SHAPE)
            .access(access.clone())
            .all()
            .await
            .map_err(|e| e.to_string())?;
        lives.push((access, live));
    }
    for t in TENANTS {
        let access = context(style, &app, t);
        let sub = hub
            .subscribe_table_as::<Member>(&access, SHAPE)
            .await
            .map_err(|e| e.to_string())?;
        let data = fresh(&f, &access).await;
        by_hand.push(ByHand {
            access,
            tenant: t,
            data,
            sub,
        });
    }
    let mut before = Vec::new();
    for h in &by_hand {
        before.push(visible(&f, &h.access).await);
    }
    let mut result = Ok(());
    'run: for body in &transactions {
        f.sql
            .batch_execute(&format!("BEGIN; {body}; COMMIT;"))
            .await
            .map_err(|e| format!("{body}: {e}"))?;
        hub.sync_point().await.map_err(|e| e.to_string())?;
        for (access, live) in &mut lives {
            live.apply_pending().await.map_err(|e| e.to_string())?;
            let expected = fresh(&f, access).await;
            if **live != expected {
                result = Err(format!(
                    "after {body}, a live value under {access:?}:\n held:     {:?}\n expected: {expected:?}",
                    **live
                ));
                break 'run;
            }
        }
        for (access, live) in &mut notes {
            live.apply_pending().await.map_err(|e| e.to_string())?;
            let expected = f
                .rowsync
                .query::<Note>()
                .preload(NOTE_SHAPE)
                .access(access.clone())
                .all()
                .await
                .map_err(|e| e.to_string())?;
            if **live != expected {
                result = Err(format!(
                    "after {body}, live notes under {access:?}:\n held:     {:?}\n expected: {expected:?}",
                    **live
                ));
                break 'run;
            }
        }
        for (h, before) in by_hand.iter_mut().zip(&mut before) {
            let after = visible(&f, &h.access).await;
            let mut messages: Vec<Message> = Vec::new();
            while let Some(message) = h.sub.try_next() {
                messages.push(message);
            }
            let mut i = 0;
            while i < messages.len() || {
                // what syncing queued (a catch-up) comes after
                if let Some(m) = h.sub.try_next() {
                    messages.push(m);
                }
                i < messages.len()
            } {
                h.sub
                    .sync(&mut h.data, &messages[i])
                    .await
                    .map_err(|e| e.to_string())?;
                i += 1;
                let leaked: Vec<(char, i64)> = match style {
                    // what the policies let the context see before or after the transaction
                    Style::Rls => {
                        let seen: BTreeSet<_> = before.union(&after).copied().collect();
                        held(&h.data).difference(&seen).copied().collect()
                    }
                    // a scope is a filter on the rows' own values: every row held passes
                    // it as held (a capture source that carries rows hands over each
                    // change's row as of that change, inside its transaction)
                    Style::Scope => outside_tenant(&h.data, h.tenant),
                };
                if !leaked.is_empty() {
                    result = Err(format!(
                        "after {body}, message {i} of {}: a holder under {:?} holds rows its context cannot see: {leaked:?}",
                        messages.len(),
                        h.access
                    ));
                    break 'run;
                }
            }
            let expected = fresh(&f, &h.access).await;
            if h.data != expected {
                result = Err(format!(
                    "after {body}, a subscription under {:?}:\n held:     {:?}\n expected: {expected:?}",
                    h.access, h.data
                ));
                break 'run;
            }
            *before = after;
        }
    }
    hub.shutdown().await;
    result
}

fn cases() -> u32 {
    std::env::var("ROWSYNC_ACCESS_ORACLE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

fn check_style(style: Style) {
    let config = Config {
        cases: cases(),
        max_shrink_iters: 100,
        failure_persistence: None,
        ..Config::default()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut runner = TestRunner::new(config);
    let outcome = runner.run(&transactions(), |txs| {
        runtime
            .block_on(run(style, txs))
            .map_err(TestCaseError::fail)
    });
    if let Err(failure) = outcome {
        panic!("{style:?}: {failure}");
    }
}

#[test]
fn holders_under_row_level_security_see_only_their_rows_after_random_writes() {
    check_style(Style::Rls);
}

#[test]
fn holders_under_scopes_see_only_their_rows_after_random_writes() {
    check_style(Style::Scope);
}
