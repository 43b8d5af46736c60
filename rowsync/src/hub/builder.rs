//! `Hub::builder(url).watch::<Person>(["posts.tags"]).start().await`.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use super::health::{CaptureCheck, DEFAULT_INTERVAL};
use super::pump::{Pump, SyncWaiters};
use super::{check, Hub, HubInner};
use crate::cache::{CacheConfig, Loader, SingleFlight};
use crate::capture::plan::CapturePlan;
#[cfg(feature = "replication")]
use crate::capture::replication::{self, ReplicationConfig, ReplicationSource};
use crate::capture::triggers::listen::ListenerConfig;
use crate::capture::triggers::{self, TriggerSource};
use crate::capture::{Acknowledged, CaptureEvent, CaptureStats, Source};
use crate::error::{ConnectError, HubError};
use crate::graph::Graph;
use crate::graph::PreloadTree;
use crate::load::{Db, Tls};
use crate::route::router::Router;
use crate::schema::{Schema, SchemaMeta, TableName};

/// Configures and starts a [`Hub`].
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct HubBuilder {
    url: String,
    watches: Vec<(&'static SchemaMeta, Vec<String>)>,
    /// Tables row-level security policies read (see `policy_table`).
    policy_tables: Vec<TableName>,
    channel: String,
    queue_capacity: usize,
    cache: CacheConfig,
    install: bool,
    check_interval: Duration,
    #[cfg(feature = "replication")]
    replication: Option<ReplicationConfig>,
    tls: Tls,
}

impl HubBuilder {
    pub(super) fn new(url: String) -> Self {
        HubBuilder {
            url,
            watches: Vec::new(),
            policy_tables: Vec::new(),
            channel: "rowsync".to_owned(),
            queue_capacity: 1024,
            cache: CacheConfig::default(),
            install: true,
            check_interval: DEFAULT_INTERVAL,
            #[cfg(feature = "replication")]
            replication: None,
            tls: Tls::Disabled,
        }
    }

    /// Watches `S` and the associations under it (EctoSync's `watchers(Person, assocs: ..)`):
    /// every table they read is captured, join tables included.
    pub fn watch<S: Schema>(mut self, preloads: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        self.watches.push((
            S::meta(),
            preloads
                .into_iter()
                .map(|p| p.as_ref().to_owned())
                .collect(),
        ));
        self
    }

    /// Captures `S`'s table as one that row-level security policies read (memberships,
    /// shares, grants): a change of it may change what any access context sees, so every
    /// holder with a role or settings in its context reloads (`Resync(PolicyChanged)`), one
    /// load per context and shape, shared by its holders. Holders without a context, or
    /// with a scope alone, are not concerned.
    ///
    /// `start` fails with [`HubError::UndeclaredPolicyInputs`] when a row-level security
    /// policy on a watched table reads a table (as `pg_depend` records it) not declared here
    /// or with [`policy_table_named`](Self::policy_table_named).
    pub fn policy_table<S: Schema>(mut self) -> Self {
        self.policy_tables.push(S::meta().table);
        self.watch::<S>(crate::NO_PRELOADS)
    }

    /// [`policy_table`](Self::policy_table) for a table no schema maps, by name: `"shares"`
    /// (found through the search path) or `"app.shares"`. Its changes are captured (none of
    /// its rows is ever read) and reload every holder with a role or settings in its
    /// context, as `policy_table` says. The name is an identifier, quoted when used.
    pub fn policy_table_named(mut self, table: &'static str) -> Self {
        let table = match table.split_once('.') {
            Some((schema, name)) => TableName {
                schema: Some(schema),
                name,
            },
            None => TableName {
                schema: None,
                name: table,
            },
        };
        if !self.policy_tables.contains(&table) {
            self.policy_tables.push(table);
        }
        self
    }

    /// The NOTIFY channel (default `rowsync`); hubs on one database that watch different
    /// schemas may use different channels.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = channel.into();
        self
    }

    /// Messages a subscriber may have queued before it is told to resync (default 1024).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// Encrypts every connection the hub opens (pool, listener, start-up check); the URL's
    /// `sslmode` decides whether TLS is preferred or required. Default: no TLS.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = tls;
        self
    }

    /// Bounds of the shared row cache.
    pub fn cache(mut self, config: CacheConfig) -> Self {
        self.cache = config;
        self
    }

    /// Captures changes by logical replication from a slot instead of triggers (see
    /// [`ReplicationConfig`]): nothing runs in the writers' transactions, a lost connection
    /// loses no change, and changes carry their rows. Needs `wal_level = logical` and a role
    /// with `REPLICATION`; `start` says clearly what is missing.
    #[cfg(feature = "replication")]
    pub fn replication(mut self, config: ReplicationConfig) -> Self {
        self.replication = Some(config);
        self
    }

    /// The `CREATE PUBLICATION` the replication capture would run, without connecting (for
    /// migrations you manage yourself; then turn
    /// [`ReplicationConfig::manage_publication`] off).
    #[cfg(feature = "replication")]
    pub fn publication_sql(&self, config: &ReplicationConfig) -> Result<String, HubError> {
        let (_, plan) = self.plan()?;
        config.validate()?;
        Ok(replication::setup::publication_sql(
            config.publication_name(),
            &plan,
        ))
    }

    /// Whether `start` installs the capture triggers (default true). Turn it off when you
    /// install [`Hub::install_sql`]'s output through your own migrations.
    pub fn install_triggers(mut self, install: bool) -> Self {
        self.install = install;
        self
    }

    /// How often the hub checks that the installed capture still serves it (default 10 s;
    /// zero: only at start, after a reconnect, and on hints). A check is two catalog queries.
    /// What it finds is reinstalled (with [`install_triggers`](Self::install_triggers)) and
    /// the holders of the tables concerned resync; see [`Hub::capture_health`].
    pub fn capture_check_interval(mut self, interval: Duration) -> Self {
        self.check_interval = interval;
        self
    }

    /// The capture plan for the watched schemas, without connecting.
    pub fn plan(&self) -> Result<(Graph, CapturePlan), HubError> {
        let mut graph = Graph::builder();
        for (meta, _) in &self.watches {
            graph = graph.register_meta(meta);
        }
        let graph = graph.build()?;
        let mut watches = Vec::new();
        for (meta, paths) in &self.watches {
            watches.push((*meta, PreloadTree::parse(meta, paths)?));
        }
        let mut plan = CapturePlan::new(&graph, &watches)?;
        for table in &self.policy_tables {
            // a policy table no schema maps: captured by name, its rows never read
            plan.add_unmapped(*table);
        }
        Ok((graph, plan))
    }

    /// The SQL `start` installs, without connecting (for migrations you manage yourself;
    /// then call [`install_triggers(false)`](Self::install_triggers)). Without a connection a
    /// table is taken to be in its declared schema, or `public`; for one found through the
    /// search path elsewhere, take [`Hub::install_sql`] from a started hub.
    pub fn install_sql(&self) -> Result<String, HubError> {
        let (_, plan) = self.plan()?;
        Ok(triggers::install_sql(&plan, &self.channel)?)
    }

    /// The SQL that removes what `start` installs.
    pub fn uninstall_sql(&self) -> Result<String, HubError> {
        let (_, plan) = self.plan()?;
        Ok(triggers::uninstall_sql(&plan, &self.channel)?)
    }

    /// One connection for setup, driven on a task of its own (abort it when done).
    async fn connect(
        &self,
    ) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), HubError> {
        let config = tokio_postgres::Config::from_str(&self.url)
            .map_err(|e| ConnectError::InvalidUrl(e.to_string()))?;
        self.tls
            .connect_spawned(&config)
            .await
            .map_err(|error| HubError::Database {
                action: "connecting to the database",
                error,
            })
    }

    /// Connects and removes the installed triggers and functions.
    pub async fn uninstall(self) -> Result<(), HubError> {
        let (_, plan) = self.plan()?;
        let (mut client, driver) = self.connect().await?;
        let result = self.remove_capture(&mut client, &plan).await;
        drop(client);
        driver.abort();
        result
    }

    /// Removes what [`prepare`](Self::prepare) installed: the triggers and functions, or
    /// with `replication`, the slot and the publication.
    async fn remove_capture(
        &self,
        client: &mut tokio_postgres::Client,
        plan: &CapturePlan,
    ) -> Result<(), HubError> {
        #[cfg(feature = "replication")]
        if let Some(config) = &self.replication {
            return Ok(replication::setup::uninstall(client, config).await?);
        }
        Ok(triggers::uninstall(client, plan, &self.channel).await?)
    }

    /// Finds the watched tables and checks them against the schemas (filling the plan's
    /// schemas and column types), then prepares the chosen capture: the triggers (unless
    /// turned off), or the publication and slot; returns each table's oid.
    async fn prepare(
        &self,
        graph: &Graph,
        plan: &mut CapturePlan,
    ) -> Result<(HashMap<TableName, u32>, Prepared), HubError> {
        let (mut client, driver) = self.connect().await?;
        let schemas: Vec<&'static SchemaMeta> = plan
            .tables()
            .filter_map(|t| graph.schema_of(t.table))
            .collect();
        let prepared = match self.check(&client, plan, &schemas).await {
            Ok(oids) => self
                .prepare_capture(&mut client, plan)
                .await
                .map(|prepared| (oids, prepared)),
            Err(error) => Err(error),
        };
        drop(client);
        driver.abort();
        prepared
    }

    /// Checks the watched tables against the schemas, then that every table their
    /// row-level security policies read is a declared policy table; returns each table's oid.
    async fn check(
        &self,
        client: &tokio_postgres::Client,
        plan: &mut CapturePlan,
        schemas: &[&'static SchemaMeta],
    ) -> Result<HashMap<TableName, u32>, HubError> {
        let oids = check::check_and_type(client, plan, schemas).await?;
        let watched: Vec<u32> = oids.values().copied().collect();
        let declared: Vec<u32> = self
            .policy_tables
            .iter()
            .filter_map(|table| oids.get(table).copied())
            .collect();
        check::policy_inputs(client, &watched, &declared).await?;
        Ok(oids)
    }

    /// What the chosen capture needs in the database.
    async fn prepare_capture(
        &self,
        client: &mut tokio_postgres::Client,
        plan: &CapturePlan,
    ) -> Result<Prepared, HubError> {
        #[cfg(feature = "replication")]
        if let Some(config) = &self.replication {
            let prepared = replication::setup::prepare(client, plan, config).await?;
            return Ok(Prepared::Replication(prepared, config.clone()));
        }
        if self.install {
            triggers::install(client, plan, &self.channel).await?;
            install_ddl_hint(client).await;
        }
        Ok(Prepared::Triggers)
    }

    /// Validates the schemas against the live database, installs capture, starts the
    /// listener (or the replication stream), and returns once changes committed from now on
    /// will be seen.
    pub async fn start(self) -> Result<Hub, HubError> {
        let (graph, mut plan) = self.plan()?;
        let (oids, prepared) = self.prepare(&graph, &mut plan).await?;

        let db = Db::connect_with(&self.url, &self.tls)?;
        let loader = Loader::new(self.cache, db.clone());
        let router = Router::new(self.queue_capacity);
        let plan = Arc::new(plan);
        let schemas: crate::hash::HashMap<_, _> = plan
            .tables()
            .filter_map(|t| graph.schema_of(t.table).map(|meta| (t.table, meta)))
            .collect();
        let (tx, rx) = mpsc::channel(16 * 1024);
        let capture = Arc::new(CaptureStats::default());
        let acknowledged = Acknowledged::default();
        let (source, check) = self
            .start_source(
                prepared,
                &plan,
                &schemas,
                oids,
                tx,
                &capture,
                &acknowledged,
                &db,
            )
            .await?;
        loader
            .cache
            .set_reads_wait_visible(source.arrives_before_visible());
        let last_seq = Arc::new(AtomicU64::new(0));
        let waiters = SyncWaiters::default();
        let accesses = super::told::Accesses::default();
        let pump = Pump {
            router: router.clone(),
            loader: loader.clone(),
            accesses: accesses.clone(),
            policy_tables: self.policy_tables.clone(),
            rows_arrive_early: source.arrives_before_visible(),
            schemas,
            last_seq: last_seq.clone(),
            acknowledged,
            waiters: waiters.clone(),
        };
        let pump = tokio::spawn(pump.run(rx));
        Ok(Hub {
            inner: Arc::new(HubInner {
                db,
                graph,
                plan,
                channel: self.channel,
                router,
                loader,
                reloads: SingleFlight::default(),
                accesses,
                checked_accesses: Default::default(),
                policy_tables: self.policy_tables.clone(),
                capture,
                check,
                last_seq,
                waiters,
                running: tokio::sync::Mutex::new(Some((source, pump))),
                shared_values: Default::default(),
                forms: Default::default(),
            }),
        })
    }
}

impl HubBuilder {
    /// Starts the chosen capture source, sending into `events`; for triggers, also the check
    /// that what is installed still serves the hub.
    #[allow(clippy::too_many_arguments)]
    async fn start_source(
        &self,
        prepared: Prepared,
        plan: &Arc<CapturePlan>,
        schemas: &crate::hash::HashMap<TableName, &'static SchemaMeta>,
        oids: HashMap<TableName, u32>,
        events: mpsc::Sender<CaptureEvent>,
        stats: &Arc<CaptureStats>,
        acknowledged: &Acknowledged,
        db: &Db,
    ) -> Result<(Source, Option<Arc<CaptureCheck>>), HubError> {
        match prepared {
            #[cfg(feature = "replication")]
            Prepared::Replication(prepared, config) => {
                let _ = (oids, db);
                let stream = replication::Stream::new(
                    plan.clone(),
                    schemas.clone(),
                    prepared.catalog,
                    prepared.xid_reference,
                    stats.clone(),
                );
                let start = replication::Start {
                    url: self.url.clone(),
                    tls: self.tls.clone(),
                    config,
                    stream,
                    confirmed: prepared.confirmed,
                };
                let source =
                    ReplicationSource::start(start, events, stats.clone(), acknowledged.clone())
                        .await?;
                Ok((Source::Replication(source), None))
            }
            Prepared::Triggers => {
                // why: the trigger source carries no rows and acknowledges nothing
                let _ = acknowledged;
                let mut listen = ListenerConfig::new(self.url.clone(), vec![self.channel.clone()]);
                listen.tls = self.tls.clone();
                let hint = Arc::new(Notify::new());
                let source = TriggerSource::start(
                    listen,
                    plan.clone(),
                    events.clone(),
                    stats.clone(),
                    hint.clone(),
                    db.clone(),
                )
                .await?;
                let check = Arc::new(CaptureCheck::new(
                    db.clone(),
                    plan.clone(),
                    self.channel.clone(),
                    self.install,
                    schemas.clone(),
                    oids,
                    events,
                    stats.clone(),
                ));
                if let Err(error) = check.run().await {
                    tracing::warn!(error = %crate::error::describe(&error), "the first capture check failed");
                }
                check.watch(hint, self.check_interval);
                Ok((Source::Triggers(source), Some(check)))
            }
        }
    }
}

/// What start-up prepared for the chosen capture.
enum Prepared {
    Triggers,
    #[cfg(feature = "replication")]
    Replication(replication::setup::Prepared, ReplicationConfig),
}

/// Installs the shared DDL event trigger when the role may (a superuser); without it the
/// periodic check is what notices schema changes, so a failure is only logged.
async fn install_ddl_hint(client: &mut tokio_postgres::Client) {
    match triggers::ddl::install(client).await {
        Ok(true) => tracing::debug!("DDL hint event trigger in place"),
        Ok(false) => tracing::debug!(
            "not a superuser: no DDL hint; schema changes are noticed by the periodic check"
        ),
        Err(error) => tracing::warn!(
            error = %crate::error::describe(&error),
            "could not install the DDL hint event trigger; the periodic check remains"
        ),
    }
}
