//! The oracle: random transactions through real PostgreSQL while subscribers hold data of
//! different shapes; once every transaction is delivered, each subscriber's data equals a
//! fresh load with its preloads.
//!
//! `ROWSYNC_ORACLE_CASES` sets the number of cases (default 12, enough for CI). A failing
//! case is printed, after shrinking, as a replayable SQL script on top of `SEED`; save it to
//! a file and run it alone with `ROWSYNC_ORACLE_REPLAY=<file>`.

use std::fmt;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rowsync::{Hub, Message, Schema, Subscription};

use crate::hub::start_hub;
use crate::support::schemas::{Person, Post, Tag};
use crate::support::{seeded, Fixture};
use crate::sync::pending;

/// One statement of a random transaction. Ids come from small ranges so statements hit
/// existing rows often; statements on missing rows are valid no-ops.
#[derive(Clone, Debug)]
pub enum Op {
    InsertPost {
        id: i64,
        person: Option<i64>,
        name: &'static str,
    },
    RenamePost {
        id: i64,
        name: &'static str,
    },
    MovePost {
        id: i64,
        person: Option<i64>,
    },
    SetOtherPerson {
        id: i64,
        person: Option<i64>,
    },
    DeletePost {
        id: i64,
    },
    Link {
        post: i64,
        tag: i64,
    },
    Unlink {
        post: i64,
        tag: i64,
    },
    MoveLink {
        post: i64,
        tag: i64,
        to: i64,
    },
    Label {
        post: i64,
        label: i64,
    },
    Unlabel {
        post: i64,
        label: i64,
    },
    RenameTag {
        id: i64,
        name: &'static str,
    },
    InsertTag {
        id: i64,
    },
    DeleteTag {
        id: i64,
    },
    RenamePerson {
        id: i64,
        name: &'static str,
    },
    Favourite {
        person: i64,
        favourite: i64,
    },
    Unfavourite {
        person: i64,
        favourite: i64,
    },
    RenameLabel {
        id: i64,
        name: &'static str,
    },
    /// The same row deleted and inserted again in one statement sequence (notifications
    /// that would be identical must each arrive).
    ReinsertTag {
        id: i64,
    },
    /// A post's links replaced twice over (the same link rows deleted and inserted again).
    RelinkPost {
        post: i64,
    },
    /// A primary-key update (only of a post nothing links to).
    RekeyPost {
        id: i64,
        to: i64,
    },
    /// A primary-key update (only of a tag no post links to).
    RekeyTag {
        id: i64,
        to: i64,
    },
}

fn opt(v: Option<i64>) -> String {
    v.map_or("NULL".to_owned(), |v| v.to_string())
}

impl Op {
    pub fn sql(&self) -> String {
        match self {
            Op::InsertPost { id, person, name } => format!(
                "INSERT INTO posts (id, name, person_id) SELECT {id}, '{name}', {p} \
                 WHERE {p} IS NULL OR EXISTS (SELECT 1 FROM persons WHERE id = {p}) ON CONFLICT DO NOTHING",
                p = opt(*person)
            ),
            Op::RenamePost { id, name } => format!("UPDATE posts SET name = '{name}' WHERE id = {id}"),
            Op::MovePost { id, person } => format!(
                "UPDATE posts SET person_id = {p} WHERE id = {id} AND ({p} IS NULL OR EXISTS (SELECT 1 FROM persons WHERE id = {p}))",
                p = opt(*person)
            ),
            Op::SetOtherPerson { id, person } => format!(
                "UPDATE posts SET other_person_id = {p} WHERE id = {id} AND ({p} IS NULL OR EXISTS (SELECT 1 FROM persons WHERE id = {p}))",
                p = opt(*person)
            ),
            Op::DeletePost { id } => format!("DELETE FROM posts WHERE id = {id}"),
            Op::Link { post, tag } => format!(
                "INSERT INTO posts_tags SELECT {post}, {tag} WHERE EXISTS (SELECT 1 FROM posts WHERE id = {post}) \
                 AND EXISTS (SELECT 1 FROM tags WHERE id = {tag}) ON CONFLICT DO NOTHING"
            ),
            Op::Unlink { post, tag } => format!("DELETE FROM posts_tags WHERE post_id = {post} AND tag_id = {tag}"),
            Op::MoveLink { post, tag, to } => format!(
                "UPDATE posts_tags SET tag_id = {to} WHERE post_id = {post} AND tag_id = {tag} \
                 AND EXISTS (SELECT 1 FROM tags WHERE id = {to}) \
                 AND NOT EXISTS (SELECT 1 FROM posts_tags WHERE post_id = {post} AND tag_id = {to})"
            ),
            Op::Label { post, label } => format!(
                "INSERT INTO posts_labels SELECT {post}, {label} WHERE EXISTS (SELECT 1 FROM posts WHERE id = {post}) ON CONFLICT DO NOTHING"
            ),
            Op::Unlabel { post, label } => format!("DELETE FROM posts_labels WHERE post_id = {post} AND label_id = {label}"),
            Op::RenameTag { id, name } => format!("UPDATE tags SET name = '{name}' WHERE id = {id}"),
            Op::InsertTag { id } => format!("INSERT INTO tags (id, name) VALUES ({id}, 'tag{id}') ON CONFLICT DO NOTHING"),
            Op::DeleteTag { id } => format!("DELETE FROM tags WHERE id = {id}"),
            Op::RenamePerson { id, name } => format!("UPDATE persons SET name = '{name}' WHERE id = {id}"),
            Op::Favourite { person, favourite } => format!(
                "INSERT INTO favourite_people VALUES ({person}, {favourite}) ON CONFLICT DO NOTHING"
            ),
            Op::Unfavourite { person, favourite } => format!(
                "DELETE FROM favourite_people WHERE person_id = {person} AND favourite_id = {favourite}"
            ),
            Op::RenameLabel { id, name } => format!("UPDATE labels SET name = '{name}' WHERE id = {id}"),
            Op::ReinsertTag { id } => format!(
                "INSERT INTO tags (id, name) VALUES ({id}, 'tag{id}') ON CONFLICT DO NOTHING; \
                 DELETE FROM tags WHERE id = {id}; \
                 INSERT INTO tags (id, name) VALUES ({id}, 'tag{id}')"
            ),
            Op::RelinkPost { post } => {
                let replace = format!(
                    "DELETE FROM posts_tags WHERE post_id = {post}; \
                     INSERT INTO posts_tags SELECT {post}, id FROM tags WHERE id IN (1, 2) \
                     AND EXISTS (SELECT 1 FROM posts WHERE id = {post})"
                );
                format!("{replace}; {replace}")
            }
            Op::RekeyPost { id, to } => format!(
                "UPDATE posts SET id = {to} WHERE id = {id} \
                 AND NOT EXISTS (SELECT 1 FROM posts WHERE id = {to}) \
                 AND NOT EXISTS (SELECT 1 FROM posts_tags WHERE post_id = {id}) \
                 AND NOT EXISTS (SELECT 1 FROM posts_labels WHERE post_id = {id})"
            ),
            Op::RekeyTag { id, to } => format!(
                "UPDATE tags SET id = {to} WHERE id = {id} \
                 AND NOT EXISTS (SELECT 1 FROM tags WHERE id = {to}) \
                 AND NOT EXISTS (SELECT 1 FROM posts_tags WHERE tag_id = {id})"
            ),
        }
    }
}

/// Transactions, printed as the SQL that replays them, and how the holders apply their
/// messages: in order, or (with a seed) each transaction's messages in a random order with
/// some applied twice, as a caller that buffers or a relay that redelivers would.
#[derive(Clone)]
struct Script {
    txs: Vec<Vec<Op>>,
    shuffle: Option<u64>,
}

/// The line of a replay file that gives the shuffle seed.
const SHUFFLE_LINE: &str = "-- shuffle seed:";

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "-- replay on a fresh fixture database after support::SEED:"
        )?;
        if let Some(seed) = self.shuffle {
            writeln!(f, "{SHUFFLE_LINE} {seed}")?;
        }
        for tx in &self.txs {
            writeln!(f, "BEGIN;")?;
            for op in tx {
                writeln!(f, "  {};", op.sql())?;
            }
            writeln!(f, "COMMIT;")?;
        }
        Ok(())
    }
}

impl Script {
    fn transactions(&self) -> Vec<String> {
        self.txs
            .iter()
            .map(|tx| tx.iter().map(Op::sql).collect::<Vec<_>>().join("; "))
            .collect()
    }
}

/// A replay file (as a failing case prints it): its transactions and shuffle seed.
fn parse_replay(text: &str) -> (Vec<String>, Option<u64>) {
    let mut txs = Vec::new();
    let mut shuffle = None;
    let mut current: Option<Vec<String>> = None;
    for line in text.lines().map(str::trim) {
        if let Some(seed) = line.strip_prefix(SHUFFLE_LINE) {
            shuffle = seed.trim().parse().ok();
        } else if line == "BEGIN;" {
            current = Some(Vec::new());
        } else if line == "COMMIT;" {
            txs.extend(current.take().map(|stmts| stmts.join("; ")));
        } else if let Some(stmts) = current.as_mut() {
            if !line.is_empty() && !line.starts_with("--") {
                stmts.push(line.trim_end_matches(';').to_owned());
            }
        }
    }
    (txs, shuffle)
}

/// The order in which a buffering caller applies `messages`: the changes between two
/// resyncs permuted, and some applied twice, by a small generator seeded with `seed`.
fn shuffled(messages: Vec<Message>, seed: u64) -> Vec<Message> {
    let mut state = seed | 1;
    let mut next = move || {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::new();
    let mut batch: Vec<Message> = Vec::new();
    let mut flush = |batch: &mut Vec<Message>, out: &mut Vec<Message>| {
        for i in (1..batch.len()).rev() {
            batch.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        let repeats: Vec<Message> = batch.iter().filter(|_| next() % 3 == 0).cloned().collect();
        out.append(batch);
        out.extend(repeats);
    };
    for message in messages {
        match message {
            Message::Change(_) => batch.push(message),
            resync => {
                flush(&mut batch, &mut out);
                out.push(resync);
            }
        }
    }
    flush(&mut batch, &mut out);
    out
}

pub fn op() -> impl Strategy<Value = Op> {
    let post = 1i64..=7;
    let person = prop_oneof![Just(None), (1i64..=3).prop_map(Some)];
    let tag = 1i64..=5;
    let name = prop_oneof![Just("test"), Just("other"), Just("zeta"), Just("alpha")];
    prop_oneof![
        (post.clone(), person.clone(), name.clone())
            .prop_map(|(id, person, name)| Op::InsertPost { id, person, name }),
        (post.clone(), name.clone()).prop_map(|(id, name)| Op::RenamePost { id, name }),
        (post.clone(), person.clone()).prop_map(|(id, person)| Op::MovePost { id, person }),
        (post.clone(), person).prop_map(|(id, person)| Op::SetOtherPerson { id, person }),
        post.clone().prop_map(|id| Op::DeletePost { id }),
        (post.clone(), tag.clone()).prop_map(|(post, tag)| Op::Link { post, tag }),
        (post.clone(), tag.clone()).prop_map(|(post, tag)| Op::Unlink { post, tag }),
        (post.clone(), tag.clone(), tag.clone()).prop_map(|(post, tag, to)| Op::MoveLink {
            post,
            tag,
            to
        }),
        (post.clone(), 1i64..=2).prop_map(|(post, label)| Op::Label { post, label }),
        (post.clone(), 1i64..=2).prop_map(|(post, label)| Op::Unlabel { post, label }),
        (tag.clone(), name.clone()).prop_map(|(id, name)| Op::RenameTag { id, name }),
        tag.clone().prop_map(|id| Op::InsertTag { id }),
        tag.clone().prop_map(|id| Op::DeleteTag { id }),
        (1i64..=3, name.clone()).prop_map(|(id, name)| Op::RenamePerson { id, name }),
        (1i64..=3, 1i64..=3).prop_map(|(person, favourite)| Op::Favourite { person, favourite }),
        (1i64..=3, 1i64..=3).prop_map(|(person, favourite)| Op::Unfavourite { person, favourite }),
        (1i64..=2, name).prop_map(|(id, name)| Op::RenameLabel { id, name }),
        tag.clone().prop_map(|id| Op::ReinsertTag { id }),
        post.clone().prop_map(|post| Op::RelinkPost { post }),
        (post.clone(), post.clone()).prop_map(|(id, to)| Op::RekeyPost { id, to }),
        (tag.clone(), tag.clone()).prop_map(|(id, to)| Op::RekeyTag { id, to }),
    ]
}

fn script() -> impl Strategy<Value = Script> {
    (
        prop::collection::vec(prop::collection::vec(op(), 1..=4), 1..=8),
        prop_oneof![Just(None), any::<u64>().prop_map(Some)],
    )
        .prop_map(|(txs, shuffle)| Script { txs, shuffle })
}

/// A subscriber: its data, its subscription, and how to load the oracle's view of it.
enum Holder {
    People {
        data: Vec<Person>,
        shape: &'static [&'static str],
        sub: Subscription,
    },
    Post {
        data: Option<Post>,
        shape: &'static [&'static str],
        sub: Subscription,
    },
    Tags {
        data: Vec<Tag>,
        shape: &'static [&'static str],
        sub: Subscription,
    },
}

const PEOPLE_TAGS_LABELS: &[&str] = &["posts.tags", "posts.labels"];
const PEOPLE_FILTERED: &[&str] = &["test_posts", "other_posts"];
const PEOPLE_THROUGH: &[&str] = &["all_tags", "profile"];
const PEOPLE_SELF: &[&str] = &["favourite_people.posts"];
/// Loaded deeper than it is subscribed ([`PEOPLE_DEEP_SUBSCRIBED`]): every copy of a row must
/// follow all the same.
const PEOPLE_DEEP: &[&str] = &["posts.person.posts", "posts.tags"];
const PEOPLE_DEEP_SUBSCRIBED: &[&str] = &["posts"];
const POST_TAGS: &[&str] = &["tags", "person"];
const TAGS_POSTS: &[&str] = &["posts"];

async fn people(f: &Fixture, shape: &[&str]) -> Vec<Person> {
    f.rowsync
        .query::<Person>()
        .filter(rowsync::Filter::in_list("id", [1i64, 2]))
        .preload(shape)
        .all()
        .await
        .unwrap()
}

async fn holders(f: &Fixture, hub: &Hub) -> Vec<Holder> {
    let mut out = Vec::new();
    for shape in [
        PEOPLE_TAGS_LABELS,
        PEOPLE_FILTERED,
        PEOPLE_THROUGH,
        PEOPLE_SELF,
    ] {
        let data = people(f, shape).await;
        let sub = hub.subscribe(&data, shape).unwrap();
        out.push(Holder::People { data, shape, sub });
    }
    let data = people(f, PEOPLE_DEEP).await;
    let sub = hub.subscribe(&data, PEOPLE_DEEP_SUBSCRIBED).unwrap();
    out.push(Holder::People {
        data,
        shape: PEOPLE_DEEP,
        sub,
    });
    let data = f
        .rowsync
        .query::<Post>()
        .preload(POST_TAGS)
        .get(1i64)
        .await
        .unwrap();
    let sub = hub.subscribe(data.iter(), POST_TAGS).unwrap();
    out.push(Holder::Post {
        data,
        shape: POST_TAGS,
        sub,
    });
    let data = f
        .rowsync
        .query::<Tag>()
        .preload(TAGS_POSTS)
        .all()
        .await
        .unwrap();
    let sub = hub.subscribe_table::<Tag>(TAGS_POSTS).unwrap();
    out.push(Holder::Tags {
        data,
        shape: TAGS_POSTS,
        sub,
    });
    out
}

async fn settle_and_check(
    f: &Fixture,
    hub: &Hub,
    holder: &mut Holder,
    shuffle: Option<u64>,
) -> Result<(), String> {
    async fn drain<S: Schema, H: rowsync::Held<S>>(
        f: &Fixture,
        hub: &Hub,
        sub: &mut Subscription,
        data: &mut H,
        shuffle: Option<u64>,
    ) {
        let mut messages = pending(f, hub, sub).await;
        if let Some(seed) = shuffle {
            messages = shuffled(messages, seed);
        }
        for message in messages {
            sub.sync(data, &message).await.unwrap();
        }
        // what syncing queued: changes of rows taken in that were routed before they were
        // held (a catch-up)
        while let Some(message) = sub.try_next() {
            sub.sync(data, &message).await.unwrap();
        }
    }
    match holder {
        Holder::People { data, shape, sub } => {
            drain(f, hub, sub, data, shuffle).await;
            // the subscription follows the data: its topics are those of what it holds now
            // (plus the followed root keys)
            let tree = rowsync::PreloadTree::parse(Person::meta(), shape.iter()).unwrap();
            let held: Vec<&Person> = data.iter().collect();
            let mut want: Vec<String> = rowsync::testing::topics_for_rows(&held, &tree)
                .unwrap()
                .into_iter()
                .chain([1i64, 2].map(|id| rowsync::Topic {
                    table: Person::meta().table,
                    selector: rowsync::Selector::row(id),
                }))
                .map(|t| format!("{t:?}"))
                .collect();
            let mut have: Vec<String> =
                sub.topics().into_iter().map(|t| format!("{t:?}")).collect();
            want.sort();
            want.dedup();
            have.sort();
            if have != want {
                return Err(format!(
                    "people {shape:?}: topics\n have: {have:?}\n want: {want:?}"
                ));
            }
            let expected = people(f, shape).await;
            // people held stay held (their ids were fixed at subscribe time)
            let expected: Vec<Person> = expected
                .into_iter()
                .filter(|p| data.iter().any(|d| d.id == p.id))
                .collect();
            if *data != expected {
                return Err(format!(
                    "people {shape:?}:\n held:     {data:?}\n expected: {expected:?}"
                ));
            }
        }
        Holder::Post { data, shape, sub } => {
            drain(f, hub, sub, data, shuffle).await;
            let expected = f
                .rowsync
                .query::<Post>()
                .preload(*shape)
                .get(1i64)
                .await
                .unwrap();
            if *data != expected {
                return Err(format!(
                    "post 1 {shape:?}:\n held:     {data:?}\n expected: {expected:?}"
                ));
            }
        }
        Holder::Tags { data, shape, sub } => {
            drain(f, hub, sub, data, shuffle).await;
            let expected = f
                .rowsync
                .query::<Tag>()
                .preload(*shape)
                .all()
                .await
                .unwrap();
            if *data != expected {
                return Err(format!(
                    "tags {shape:?}:\n held:     {data:?}\n expected: {expected:?}"
                ));
            }
        }
    }
    Ok(())
}

/// Runs the transactions, then checks every holder against a fresh load. With a shuffle
/// seed, a second set of holders of the same shapes buffers every message and applies them
/// at the end in a shuffled order with repeats, while the first set syncs after each
/// transaction (so the shared row cache holds reads older than the latest state, as it does
/// for a late or redelivered message).
async fn run(transactions: Vec<String>, shuffle: Option<u64>) -> Result<(), String> {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let mut in_order = holders(&f, &hub).await;
    let mut buffered = match shuffle {
        Some(_) => holders(&f, &hub).await,
        None => Vec::new(),
    };
    // read-your-writes: after each transaction, a live value that waits for it holds it
    let mut live = hub
        .live::<Person>()
        .preload(PEOPLE_TAGS_LABELS)
        .all()
        .await
        .map_err(|e| e.to_string())?;
    let mut writer = f.db.connect().await.map_err(|e| e.to_string())?;
    let mut result = Ok(());
    'run: for body in &transactions {
        let sql = format!("BEGIN; {body}; COMMIT;");
        let tx = writer.transaction().await.map_err(|e| e.to_string())?;
        tx.batch_execute(body)
            .await
            .map_err(|e| format!("{sql}: {e}"))?;
        let xid = rowsync::current_xid(&tx).await.map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| format!("{sql}: {e}"))?;
        live.wait_for(xid).await.map_err(|e| e.to_string())?;
        let fresh = f
            .rowsync
            .query::<Person>()
            .preload(PEOPLE_TAGS_LABELS)
            .all()
            .await
            .map_err(|e| e.to_string())?;
        if *live != fresh {
            result = Err(format!(
                "after waiting for {sql}, a live value:\n held:     {:?}\n expected: {fresh:?}",
                *live
            ));
            break 'run;
        }
        if shuffle.is_some() {
            for holder in &mut in_order {
                if let Err(e) = settle_and_check(&f, &hub, holder, None).await {
                    result = Err(format!("after {sql}\n{e}"));
                    break 'run;
                }
            }
        }
    }
    if result.is_ok() {
        let sets = [(&mut in_order, None), (&mut buffered, shuffle)];
        'check: for (set, order) in sets {
            for holder in set.iter_mut() {
                if let Err(e) = settle_and_check(&f, &hub, holder, order).await {
                    let how = if order.is_some() {
                        "shuffled"
                    } else {
                        "in order"
                    };
                    result = Err(format!("applied {how}: {e}"));
                    break 'check;
                }
            }
        }
    }
    hub.shutdown().await;
    result
}

#[test]
fn synced_data_equals_a_fresh_load_after_random_transactions() {
    let cases = std::env::var("ROWSYNC_ORACLE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let config = Config {
        cases,
        max_shrink_iters: 200,
        failure_persistence: None,
        ..Config::default()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    if let Ok(file) = std::env::var("ROWSYNC_ORACLE_REPLAY") {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let (transactions, shuffle) = parse_replay(&text);
        assert!(
            !transactions.is_empty(),
            "{file} holds no BEGIN; .. COMMIT; block"
        );
        if let Err(e) = runtime.block_on(run(transactions, shuffle)) {
            panic!("{e}");
        }
        return;
    }
    let mut runner = TestRunner::new(config);
    let outcome = runner.run(&script(), |script| {
        runtime
            .block_on(run(script.transactions(), script.shuffle))
            .map_err(TestCaseError::fail)
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}
