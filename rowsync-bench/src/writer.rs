//! The writer: changes posts from its own connection on a thread of its own, naming each
//! changed post after the change (`m<n>`), and records when each change's COMMIT returned.
//!
//! why a thread of its own: CPU per change is rowsync's cost, not the writer's; the
//! writer's thread is left out of the process CPU time (see `procfs::exclude_this_thread`).

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Client;

use crate::db::open;
use crate::schema::marker_name;
use crate::BenchResult;

/// What the writer thread is asked to do.
enum Command {
    /// Rename each post to the marker `first + i`, one transaction each, at `rate` per
    /// second (`None`: back to back).
    Posts {
        posts: Vec<i64>,
        first: u32,
        rate: Option<f64>,
        reply: oneshot::Sender<Result<Vec<Instant>, String>>,
    },
    /// Rename every post to the marker `first + i` in one transaction, one UPDATE per
    /// `chunk` posts (distinct within a chunk).
    Batch {
        posts: Vec<i64>,
        first: u32,
        chunk: usize,
        reply: oneshot::Sender<Result<Instant, String>>,
    },
    /// Run this SQL.
    Execute {
        sql: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// The handle scenarios use; the connection lives on the writer thread.
pub struct Writer {
    tx: mpsc::UnboundedSender<Command>,
    /// `commits[n]`: when change `n`'s COMMIT returned to the writer.
    commits: Vec<Option<Instant>>,
    /// `posts[n]`: the post change `n` renamed.
    posts: Vec<i64>,
}

impl Writer {
    /// Starts the writer thread and connects it to `url`.
    pub async fn connect(url: &str) -> BenchResult<Writer> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready, connected) = oneshot::channel();
        let url = url.to_owned();
        std::thread::Builder::new()
            .name("rowsync-bench-writer".to_owned())
            .spawn(move || thread_main(url, rx, ready))?;
        connected.await.map_err(|_| "the writer thread ended")??;
        Ok(Writer {
            tx,
            commits: Vec::new(),
            posts: Vec::new(),
        })
    }

    /// The number the next change gets.
    pub fn next_marker(&self) -> u32 {
        self.commits.len() as u32
    }

    /// When change `n`'s COMMIT returned.
    pub fn commit_of(&self, n: u32) -> Option<Instant> {
        self.commits.get(n as usize).copied().flatten()
    }

    /// The post change `n` renamed.
    pub fn post_of(&self, n: u32) -> Option<i64> {
        self.posts.get(n as usize).copied()
    }

    /// Renames each post of `posts` in a transaction of its own, at `rate` per second
    /// (`None`: back to back); returns the markers written.
    pub async fn posts(
        &mut self,
        posts: Vec<i64>,
        rate: Option<f64>,
    ) -> BenchResult<std::ops::Range<u32>> {
        let first = self.next_marker();
        let (reply, answer) = oneshot::channel();
        self.send(Command::Posts {
            posts: posts.clone(),
            first,
            rate,
            reply,
        })?;
        let instants = answer.await.map_err(|_| "the writer thread ended")??;
        self.commits.extend(instants.into_iter().map(Some));
        self.posts.extend(posts);
        Ok(first..self.next_marker())
    }

    /// `count` single-row transactions at `rate` per second (post of change `i` chosen by
    /// `post_of(i)`); returns the markers written.
    pub async fn paced(
        &mut self,
        count: usize,
        rate: f64,
        post_of: impl FnMut(usize) -> i64,
    ) -> BenchResult<std::ops::Range<u32>> {
        self.posts((0..count).map(post_of).collect(), Some(rate))
            .await
    }

    /// One transaction renaming every post of `posts` (distinct), each to a marker of its
    /// own; returns the markers, in the order of `posts`.
    pub async fn batch(&mut self, posts: &[i64]) -> BenchResult<std::ops::Range<u32>> {
        self.backlog(posts, posts.len()).await
    }

    /// One transaction renaming every post of `posts`, each to a marker of its own, with
    /// one UPDATE per `chunk` posts (the posts of a chunk distinct; a post may come back
    /// in another chunk): a backlog committed at once. Returns the markers, in the order
    /// of `posts`; their commit instant is when the COMMIT was sent (when there was more
    /// than one chunk).
    pub async fn backlog(
        &mut self,
        posts: &[i64],
        chunk: usize,
    ) -> BenchResult<std::ops::Range<u32>> {
        let first = self.next_marker();
        let (reply, answer) = oneshot::channel();
        self.send(Command::Batch {
            posts: posts.to_vec(),
            first,
            chunk: chunk.max(1),
            reply,
        })?;
        let at = answer.await.map_err(|_| "the writer thread ended")??;
        self.commits.extend(posts.iter().map(|_| Some(at)));
        self.posts.extend(posts);
        Ok(first..self.next_marker())
    }

    /// Runs any SQL (a change the scenario makes by hand).
    pub async fn execute(&self, sql: &str) -> BenchResult<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Execute {
            sql: sql.to_owned(),
            reply,
        })?;
        answer.await.map_err(|_| "the writer thread ended")??;
        Ok(())
    }

    fn send(&self, command: Command) -> BenchResult<()> {
        self.tx
            .send(command)
            .map_err(|_| "the writer thread ended".into())
    }
}

fn thread_main(
    url: String,
    mut commands: mpsc::UnboundedReceiver<Command>,
    ready: oneshot::Sender<Result<(), String>>,
) {
    crate::procfs::exclude_this_thread();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(format!("writer runtime: {e}")));
            return;
        }
    };
    runtime.block_on(async move {
        let client = match open(&url).await {
            Ok((client, _connection)) => client,
            Err(e) => {
                let _ = ready.send(Err(e.to_string()));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        // ends when the handle is dropped
        while let Some(command) = commands.recv().await {
            match command {
                Command::Posts {
                    posts,
                    first,
                    rate,
                    reply,
                } => {
                    let _ = reply.send(write_posts(&client, &posts, first, rate).await);
                }
                Command::Batch {
                    posts,
                    first,
                    chunk,
                    reply,
                } => {
                    let _ = reply.send(write_batch(&client, &posts, first, chunk).await);
                }
                Command::Execute { sql, reply } => {
                    let result = client.batch_execute(&sql).await;
                    let _ = reply.send(result.map_err(|e| crate::db::describe(&e)));
                }
            }
        }
    });
}

async fn write_posts(
    client: &Client,
    posts: &[i64],
    first: u32,
    rate: Option<f64>,
) -> Result<Vec<Instant>, String> {
    let describe = |e: tokio_postgres::Error| crate::db::describe(&e);
    let update = client
        .prepare("UPDATE posts SET name = $1 WHERE id = $2")
        .await
        .map_err(describe)?;
    let mut ticks = rate.map(|r| {
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / r));
        // why Burst: a late tick is caught up, so the mean rate holds.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        ticks
    });
    let mut commits = Vec::with_capacity(posts.len());
    for (i, post) in posts.iter().enumerate() {
        if let Some(ticks) = ticks.as_mut() {
            ticks.tick().await;
        }
        let name = marker_name(first + i as u32);
        let rows = client
            .execute(&update, &[&name, post])
            .await
            .map_err(describe)?;
        commits.push(Instant::now());
        if rows != 1 {
            return Err(format!("post {post} does not exist"));
        }
    }
    Ok(commits)
}

async fn write_batch(
    client: &Client,
    posts: &[i64],
    first: u32,
    chunk: usize,
) -> Result<Instant, String> {
    let describe = |e: tokio_postgres::Error| crate::db::describe(&e);
    let several = posts.len() > chunk;
    if several {
        client.batch_execute("BEGIN").await.map_err(describe)?;
    }
    for (c, ids) in posts.chunks(chunk).enumerate() {
        let from = i64::from(first) + (c * chunk) as i64;
        let markers: Vec<i64> = (0..ids.len() as i64).map(|i| from + i).collect();
        client
            .execute(
                "UPDATE posts AS p SET name = 'm' || v.n FROM unnest($1::int8[], $2::int8[]) AS v(id, n)
                 WHERE p.id = v.id",
                &[&ids, &markers],
            )
            .await
            .map_err(describe)?;
    }
    if several {
        // why the moment COMMIT is sent: the backlog is there for consumers from then on
        // (NOTIFY and logical decoding deliver it as the commit happens, before the
        // writer hears back)
        let committing = Instant::now();
        client.batch_execute("COMMIT").await.map_err(describe)?;
        return Ok(committing);
    }
    Ok(Instant::now())
}
