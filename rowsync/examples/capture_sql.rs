//! Prints (or removes) the SQL a hub installs for capture, for users who manage
//! migrations themselves.
//!
//! ```sh
//! cargo run -p rowsync --example capture_sql -- install     # print the install script
//! cargo run -p rowsync --example capture_sql -- uninstall   # print the removal script
//! cargo run -p rowsync --example capture_sql -- remove      # connect and remove (DATABASE_URL)
//! cargo run -p rowsync --example capture_sql -- check       # connect and check (DATABASE_URL)
//! ```
//!
//! Ship the install script in a migration and start hubs with `install_triggers(false)`; their
//! capture check (`Hub::capture_health`) tells when what is installed no longer serves them.

// why: the fields of an example's structs speak for themselves.
#![allow(missing_docs)]

use rowsync::{Assoc, Hub, HubBuilder, Schema};

#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "persons")]
pub struct Person {
    pub id: i64,
    pub name: String,
    #[rowsync(has_many(Post, foreign_key = "person_id"))]
    pub posts: Assoc<Vec<Post>>,
}

#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "posts")]
pub struct Post {
    pub id: i64,
    pub title: String,
    pub person_id: i64,
    #[rowsync(many_to_many(Tag, join_through = "posts_tags"))]
    pub tags: Assoc<Vec<Tag>>,
}

#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "tags")]
pub struct Tag {
    pub id: i64,
    pub name: String,
}

fn builder(url: &str) -> HubBuilder {
    Hub::builder(url).watch::<Person>(["posts.tags"])
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let command = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "install".to_owned());
    match command.as_str() {
        "install" => print!("{}", builder("").install_sql()?),
        "uninstall" => print!("{}", builder("").uninstall_sql()?),
        "remove" => {
            let url = std::env::var("DATABASE_URL")
                .map_err(|_| "set DATABASE_URL to the database to clean")?;
            builder(&url).uninstall().await?;
            println!("removed rowsync's triggers and functions");
        }
        "check" => {
            let url = std::env::var("DATABASE_URL")
                .map_err(|_| "set DATABASE_URL to the database to check")?;
            let hub = builder(&url).install_triggers(false).start().await?;
            let problems = hub.capture_health();
            for problem in &problems {
                println!("{problem}");
            }
            hub.shutdown().await;
            if problems.is_empty() {
                println!("capture serves this hub");
            } else {
                std::process::exit(1);
            }
        }
        other => {
            eprintln!("unknown command `{other}`; use install, uninstall, remove or check");
            std::process::exit(2);
        }
    }
    Ok(())
}
