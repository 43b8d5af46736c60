//! The running check of the installed capture: at start, after every listener reconnect,
//! every interval, and at once on a hint (a payload lacking a column or of another format, a
//! DDL notification), it compares the catalog with what the hub needs. Each table found
//! wrong is reinstalled when the hub installs capture, then its holders are told to reload
//! (`SchemaChanged`), so that the reload sees capture working again; the findings are kept
//! for [`Hub::capture_health`](super::Hub::capture_health).
//!
//! The check is the truth; hints only say when to look.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::check::mapped_findings;
use crate::capture::plan::CapturePlan;
use crate::capture::triggers::catalog::{self, LiveTable};
use crate::capture::triggers::{self, health};
use crate::capture::{CaptureEvent, CaptureProblem, CaptureStats};
use crate::change::ResyncReason;
use crate::error::{HubError, LoadError};
use crate::load::Db;
use crate::schema::{SchemaMeta, TableName};

/// The default time between two checks.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// What a check needs, and what it remembers between runs.
pub(crate) struct CaptureCheck {
    db: Db,
    plan: Arc<CapturePlan>,
    channel: String,
    install: bool,
    schemas: crate::hash::HashMap<TableName, &'static SchemaMeta>,
    stats: Arc<CaptureStats>,
    /// Where resyncs go (the pump's queue); taken at shutdown so the pump can end.
    events: parking_lot::Mutex<Option<mpsc::Sender<CaptureEvent>>>,
    /// Checks run one at a time.
    state: tokio::sync::Mutex<State>,
    last: parking_lot::Mutex<Vec<CaptureProblem>>,
    watcher: parking_lot::Mutex<Option<JoinHandle<()>>>,
}

struct State {
    /// Each table's oid as last seen: a new one means the table was created again.
    oids: HashMap<TableName, u32>,
    /// Each table's triggers as last seen: a new version means someone touched them.
    triggers: HashMap<TableName, [Option<catalog::TriggerVersion>; 2]>,
    /// The lasting problems of the previous check, to count each once however long it
    /// lasts, and to tell the holders of a table when its capture works again.
    previous: HashSet<(TableName, String)>,
}

impl CaptureCheck {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: Db,
        plan: Arc<CapturePlan>,
        channel: String,
        install: bool,
        schemas: crate::hash::HashMap<TableName, &'static SchemaMeta>,
        oids: HashMap<TableName, u32>,
        events: mpsc::Sender<CaptureEvent>,
        stats: Arc<CaptureStats>,
    ) -> CaptureCheck {
        CaptureCheck {
            db,
            plan,
            channel,
            install,
            schemas,
            stats,
            events: parking_lot::Mutex::new(Some(events)),
            state: tokio::sync::Mutex::new(State {
                oids,
                triggers: HashMap::new(),
                previous: HashSet::new(),
            }),
            last: parking_lot::Mutex::new(Vec::new()),
            watcher: parking_lot::Mutex::new(None),
        }
    }

    /// The last check's findings.
    pub fn last(&self) -> Vec<CaptureProblem> {
        self.last.lock().clone()
    }

    /// Runs the check every `interval` (never, for zero) and whenever `hint` is notified.
    pub fn watch(self: &Arc<Self>, hint: Arc<Notify>, interval: Duration) {
        let check = Arc::clone(self);
        let task = tokio::spawn(async move {
            let mut ticker = (!interval.is_zero()).then(|| {
                let mut ticker =
                    tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticker
            });
            loop {
                tokio::select! {
                    _ = async { ticker.as_mut().expect("guarded").tick().await }, if ticker.is_some() => {}
                    _ = hint.notified() => {}
                }
                if let Err(error) = check.run().await {
                    tracing::warn!(error = %crate::error::describe(&error), "capture check failed; retrying at the next one");
                }
            }
        });
        *self.watcher.lock() = Some(task);
    }

    /// Stops the periodic check and lets go of the pump's queue.
    pub fn stop(&self) {
        if let Some(task) = self.watcher.lock().take() {
            task.abort();
        }
        self.events.lock().take();
    }

    /// Runs one check: reads the catalog, reinstalls what can be (when the hub installs),
    /// tells the holders of every table found wrong to reload, and returns the findings.
    pub async fn run(&self) -> Result<Vec<CaptureProblem>, HubError> {
        let mut state = self.state.lock().await;
        CaptureStats::count(&self.stats.checks);
        let mut client = self
            .db
            .pool()
            .get()
            .await
            .map_err(|e| HubError::from(LoadError::Pool(e)))?;
        let client: &mut tokio_postgres::Client = &mut client;
        let observe_failed = |error| HubError::Database {
            action: "checking the installed capture",
            error,
        };
        let live = catalog::observe(&*client, &self.plan, &self.channel)
            .await
            .map_err(observe_failed)?;
        let (found, repairable) = self.assess(&mut state, &live);
        let reinstalled = self.install && repairable && self.repair(client).await;
        // why look again after a repair: it wrote the triggers, which the next check must
        // not take for someone else's doing
        let settled = if reinstalled {
            catalog::observe(&*client, &self.plan, &self.channel)
                .await
                .map_err(observe_failed)?
        } else {
            live
        };
        for (table, live) in self.plan.tables().zip(&settled) {
            state
                .triggers
                .insert(table.table, health::trigger_versions(live));
        }
        let problems = self.report(&mut state, found, reinstalled).await;
        *self.last.lock() = problems.clone();
        Ok(problems)
    }

    /// What is wrong with each table, and whether reinstalling would fix some of it.
    fn assess(
        &self,
        state: &mut State,
        live: &[LiveTable],
    ) -> (Vec<(TableName, Vec<Finding>)>, bool) {
        let mut found = Vec::new();
        let mut repairable = false;
        for (table, live) in self.plan.tables().zip(live) {
            let exists = live.oid.is_some();
            let (installed, fix) = health::installed_findings(table, &self.channel, live);
            let before = state.oids.get(&table.table).copied();
            let mut findings = Finding::all(
                health::table_findings(table, before, live),
                Lasts::If(!exists),
            );
            findings.extend(Finding::all(installed, Lasts::UnlessRepaired));
            let touched = health::touched_findings(
                table,
                &self.channel,
                state.triggers.get(&table.table),
                live,
            );
            findings.extend(Finding::all(touched, Lasts::If(false)));
            findings.extend(Finding::all(
                health::column_findings(table, live),
                Lasts::If(true),
            ));
            if let Some(meta) = self.schemas.get(&table.table).filter(|_| exists) {
                let mapped = mapped_findings(meta, &live.columns)
                    .into_iter()
                    .map(|f| format!("mapped column {f}; reads of the table fail"))
                    .collect();
                findings.extend(Finding::all(mapped, Lasts::If(true)));
            }
            repairable |= exists && !fix.is_empty();
            if let Some(oid) = live.oid {
                state.oids.insert(table.table, oid);
            }
            if !findings.is_empty() {
                found.push((table.table, findings));
            }
        }
        (found, repairable)
    }

    /// Reinstalls what no longer serves the plan; whether that worked.
    async fn repair(&self, client: &mut tokio_postgres::Client) -> bool {
        match triggers::repair(client, &self.plan, &self.channel).await {
            Ok(_) => true,
            Err(error) => {
                tracing::error!(error = %crate::error::describe(&error), "reinstalling capture failed; retrying at the next check");
                false
            }
        }
    }

    /// Logs and counts the findings, and sends a resync for every table they concern, and
    /// for every table whose lasting problems are gone.
    async fn report(
        &self,
        state: &mut State,
        found: Vec<(TableName, Vec<Finding>)>,
        reinstalled: bool,
    ) -> Vec<CaptureProblem> {
        let events = self.events.lock().clone();
        let resync = |table: TableName, detail: String| {
            let events = events.clone();
            async move {
                if let Some(events) = events {
                    let reason = ResyncReason::SchemaChanged { table, detail };
                    let event = CaptureEvent::Resync {
                        table: Some(table),
                        reason,
                    };
                    let _ = events.send(event).await;
                }
            }
        };
        let mut problems = Vec::new();
        let mut lasting = HashSet::new();
        for (table, findings) in &found {
            for finding in findings {
                let key = (*table, finding.detail.clone());
                // a problem that lasts is counted when it appears, not at every check
                if !state.previous.contains(&key) {
                    CaptureStats::count(&self.stats.problems);
                }
                if finding.lasts(reinstalled) {
                    lasting.insert(key);
                }
                tracing::error!(%table, problem = %finding.detail, reinstalled, "capture problem");
                problems.push(CaptureProblem {
                    table: *table,
                    detail: finding.detail.clone(),
                });
            }
            let mut detail: Vec<&str> = findings.iter().map(|f| f.detail.as_str()).collect();
            detail.dedup();
            let mut detail = detail.join("; ");
            if reinstalled {
                detail.push_str(" (capture reinstalled)");
            }
            resync(*table, detail).await;
        }
        // why a resync when a lasting problem goes away: a holder told to reload while the
        // table could not be read (a mapped column renamed, say) still holds what it had,
        // and nothing else would tell it that reading works again
        let mut recovered: Vec<TableName> = state
            .previous
            .iter()
            .map(|(table, _)| *table)
            .filter(|table| !found.iter().any(|(t, _)| t == table))
            .collect();
        recovered.sort();
        recovered.dedup();
        for table in recovered {
            tracing::info!(%table, "capture works again; resyncing the table's subscribers");
            resync(
                table,
                "the capture problems found earlier are gone".to_owned(),
            )
            .await;
        }
        state.previous = lasting;
        problems
    }
}

/// When a finding lasts beyond the check that made it.
#[derive(Clone, Copy)]
enum Lasts {
    If(bool),
    /// Until a repair fixes it (it lasts when the hub does not install, or the repair failed).
    UnlessRepaired,
}

/// One thing a check found wrong.
struct Finding {
    detail: String,
    lasts: Lasts,
}

impl Finding {
    fn all(details: Vec<String>, lasts: Lasts) -> Vec<Finding> {
        details
            .into_iter()
            .map(|detail| Finding { detail, lasts })
            .collect()
    }

    /// Whether it is still there after this check: what is gone or cannot be read stays
    /// until someone puts it back; what a repair fixed, or was only noticed, does not.
    fn lasts(&self, reinstalled: bool) -> bool {
        match self.lasts {
            Lasts::If(lasts) => lasts,
            Lasts::UnlessRepaired => !reinstalled,
        }
    }
}
