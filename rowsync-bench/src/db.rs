//! The bench database: created fresh for each scenario on the throwaway cluster (or the
//! server of `DATABASE_URL`), seeded with `generate_series`, and asked through
//! `pg_stat_statements` how many reads the server really served.

use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

use crate::schema::{DDL, TABLES};
use crate::BenchResult;

/// How many rows to seed; posts belong to persons in blocks, each post links to
/// `tags_per_post` distinct tags.
#[derive(Debug, Clone, Copy)]
pub struct Seed {
    /// Persons `1..=persons`.
    pub persons: i64,
    /// Posts per person; person `p` owns posts `(p-1)*n+1 ..= p*n`.
    pub posts_per_person: i64,
    /// Tags `1..=tags`.
    pub tags: i64,
    /// Tags per post (at most `tags`).
    pub tags_per_post: i64,
}

/// The rows a scenario starts with.
#[derive(Debug, Clone)]
pub enum Seeding {
    /// Persons owning the same number of posts each.
    Uniform(Seed),
    /// One person per entry, owning that many posts.
    Lists {
        /// Posts of person `i + 1`.
        sizes: Vec<i64>,
        /// Tags `1..=tags`.
        tags: i64,
        /// Tags per post.
        tags_per_post: i64,
    },
}

/// A database of the bench's own, dropped by [`BenchDb::drop_database`].
pub struct BenchDb {
    url: String,
    admin_url: String,
    name: String,
    client: Client,
    connection: JoinHandle<()>,
    dbid: u32,
    postmaster: Option<u32>,
}

/// What the server read for the bench tables (`pg_stat_statements`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Reads {
    /// SELECT statements executed.
    pub statements: u64,
    /// Rows those statements returned.
    pub rows: u64,
}

impl BenchDb {
    /// Creates database `name` afresh (dropping a leftover one), with the bench tables and
    /// `pg_stat_statements`.
    pub async fn create(name: &str) -> BenchResult<BenchDb> {
        let server = rowsync_testdb::server().await.map_err(|e| {
            format!(
                "no PostgreSQL to benchmark against: {e} (install PostgreSQL or set DATABASE_URL)"
            )
        })?;
        let (admin, admin_conn) = open(server.url()).await?;
        let quoted = format!("\"{name}\"");
        // why two calls: CREATE DATABASE cannot run in the implicit transaction of a batch.
        for sql in [
            format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"),
            format!("CREATE DATABASE {quoted}"),
        ] {
            admin
                .batch_execute(&sql)
                .await
                .map_err(|e| format!("{sql}: {}", describe(&e)))?;
        }
        drop(admin);
        let _ = admin_conn.await;

        let url = server.url_for(name);
        let (client, connection) = open(&url).await?;
        client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await
            .map_err(|e| format!("CREATE EXTENSION pg_stat_statements: {}", describe(&e)))?;
        client.batch_execute(DDL).await?;
        let dbid: u32 = client
            .query_one(
                "SELECT oid FROM pg_database WHERE datname = current_database()",
                &[],
            )
            .await?
            .get(0);
        let backend: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0);
        let db = BenchDb {
            url,
            admin_url: server.url().to_owned(),
            name: name.to_owned(),
            client,
            connection,
            dbid,
            postmaster: u32::try_from(backend)
                .ok()
                .and_then(crate::procfs::parent_of),
        };
        db.reset_reads().await.map_err(|e| {
            format!("{e}; the server must load pg_stat_statements (shared_preload_libraries), or unset DATABASE_URL to use a throwaway cluster")
        })?;
        Ok(db)
    }

    /// The URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Inserts the rows `seeding` describes (before any hub starts, so no trigger fires).
    pub async fn seed(&self, seeding: &Seeding) -> BenchResult<()> {
        match seeding {
            Seeding::Uniform(seed) => self.seed_uniform(*seed).await,
            Seeding::Lists {
                sizes,
                tags,
                tags_per_post,
            } => self.seed_lists(sizes, *tags, *tags_per_post).await,
        }
    }

    async fn seed_uniform(&self, seed: Seed) -> BenchResult<()> {
        let Seed {
            persons,
            posts_per_person,
            tags,
            tags_per_post,
        } = seed;
        let posts = format!(
            "INSERT INTO posts SELECT i, 'post ' || i, (i - 1) / {posts_per_person} + 1
             FROM generate_series(1, {}) i;",
            persons * posts_per_person
        );
        self.seed_with(persons, &posts, tags, tags_per_post)
            .await
            .map_err(|e| format!("seeding {seed:?}: {}", describe(&e)).into())
    }

    /// One person per entry of `sizes`, person `i + 1` owning `sizes[i]` posts with
    /// consecutive ids.
    async fn seed_lists(&self, sizes: &[i64], tags: i64, tags_per_post: i64) -> BenchResult<()> {
        let mut posts = String::new();
        let mut first = 0;
        for (i, n) in sizes.iter().enumerate() {
            posts.push_str(&format!(
                "INSERT INTO posts SELECT {first} + i, 'post ' || ({first} + i), {}
                 FROM generate_series(1, {n}) i;",
                i + 1
            ));
            first += n;
        }
        self.seed_with(sizes.len() as i64, &posts, tags, tags_per_post)
            .await
            .map_err(|e| format!("seeding lists {sizes:?}: {}", describe(&e)).into())
    }

    /// Persons, tags, the posts `posts_sql` inserts, and `tags_per_post` links per post.
    async fn seed_with(
        &self,
        persons: i64,
        posts_sql: &str,
        tags: i64,
        tags_per_post: i64,
    ) -> Result<(), tokio_postgres::Error> {
        // why this spread: tag (7p + j*step) mod tags for j < tags_per_post are distinct, and
        // neighbouring posts get different tags.
        let step = tags / tags_per_post.max(1);
        self.client
            .batch_execute(&format!(
                "INSERT INTO persons SELECT i, 'person ' || i FROM generate_series(1, {persons}) i;
                 INSERT INTO tags SELECT i, 'tag ' || i FROM generate_series(1, {tags}) i;
                 {posts_sql}
                 INSERT INTO posts_tags SELECT p.id, (p.id * 7 + j * {step}) % {tags} + 1
                     FROM posts p, generate_series(0, {tags_per_post} - 1) j;
                 ANALYZE;"
            ))
            .await
    }

    /// Forgets the statements counted so far in this database.
    pub async fn reset_reads(&self) -> BenchResult<()> {
        self.client
            .execute("SELECT pg_stat_statements_reset(0, $1, 0)", &[&self.dbid])
            .await?;
        Ok(())
    }

    /// SELECT statements the server executed on the bench tables since the last reset, and
    /// the rows they returned.
    pub async fn reads(&self) -> BenchResult<Reads> {
        let tables = TABLES.join("|");
        let pattern = format!("\\m({tables})\\M");
        let row = self
            .client
            .query_one(
                "SELECT coalesce(sum(calls), 0)::int8, coalesce(sum(rows), 0)::int8
                 FROM pg_stat_statements
                 WHERE dbid = $1 AND query ~* '^\\s*select' AND query ~ $2
                   AND query !~ 'pg_stat_statements'",
                &[&self.dbid, &pattern],
            )
            .await?;
        let (calls, rows): (i64, i64) = (row.get(0), row.get(1));
        Ok(Reads {
            statements: calls as u64,
            rows: rows as u64,
        })
    }

    /// CPU time of every process of the server so far (its backends, WAL senders and
    /// background workers), when the server runs on this machine and `/proc` shows it.
    pub fn server_cpu(&self) -> Option<crate::procfs::ProcessTimes> {
        self.postmaster.map(crate::procfs::children_cpu)
    }

    /// Runs `sql` on the bench's own connection.
    pub async fn execute(&self, sql: &str) -> BenchResult<()> {
        self.client
            .batch_execute(sql)
            .await
            .map_err(|e| format!("{sql}: {}", describe(&e)).into())
    }

    /// The server's current WAL insert position, as text (`pg_current_wal_lsn()`).
    pub async fn wal_lsn(&self) -> BenchResult<String> {
        let row = self
            .client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await?;
        Ok(row.get(0))
    }

    /// Drops the database (closing every connection to it).
    pub async fn drop_database(self) -> BenchResult<()> {
        drop(self.client);
        let _ = self.connection.await;
        let (admin, conn) = open(&self.admin_url).await?;
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // why retried: a replication hub that just shut down leaves its WAL sender holding
        // the slot for a moment, and FORCE does not end WAL senders ("used by an active
        // logical replication slot", object_in_use)
        let mut attempts = 0;
        loop {
            match admin.batch_execute(&sql).await {
                Ok(()) => break,
                Err(e)
                    if attempts < 100
                        && e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) =>
                {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        drop(admin);
        let _ = conn.await;
        Ok(())
    }
}

/// The server's version (`SHOW server_version`); fails clearly when there is no server.
pub async fn server_version() -> BenchResult<String> {
    let server = rowsync_testdb::server().await.map_err(|e| {
        format!("no PostgreSQL to benchmark against: {e} (install PostgreSQL or set DATABASE_URL)")
    })?;
    let (client, connection) = open(server.url()).await?;
    let version: String = client.query_one("SHOW server_version", &[]).await?.get(0);
    drop(client);
    let _ = connection.await;
    Ok(version)
}

/// A driver error with the server's message, when there is one.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    // why the chain: "error connecting to server" alone does not say "connection refused"
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Opens a connection and drives it on a task of the current runtime.
pub async fn open(url: &str) -> BenchResult<(Client, JoinHandle<()>)> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        // why not the URL: it may carry a password
        .map_err(|e| format!("connecting to PostgreSQL: {}", describe(&e)))?;
    let handle = tokio::spawn(async move {
        // why ignore: a dropped database ends its connections on purpose.
        let _ = connection.await;
    });
    Ok((client, handle))
}
