//! The Rust side of `fixture.sql`: every association kind of the example.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use rowsync::{Assoc, Schema, TextEnum};
use uuid::Uuid;

#[derive(Schema, Clone, Debug, PartialEq, serde::Serialize)]
#[rowsync(table = "persons")]
pub struct Person {
    pub id: i64,
    pub name: String,
    #[rowsync(has_many(Post, foreign_key = "person_id", order_by = "id"))]
    pub posts: Assoc<Vec<Post>>,
    #[rowsync(has_many(Post, foreign_key = "other_person_id"))]
    pub other_posts: Assoc<Vec<Post>>,
    #[rowsync(has_many(Post, foreign_key = "person_id", filter(name = "test")))]
    pub test_posts: Assoc<Vec<Post>>,
    #[rowsync(has_many(Tag, through(posts, tags)))]
    pub all_tags: Assoc<Vec<Tag>>,
    #[rowsync(has_one(Profile, foreign_key = "person_id"))]
    pub profile: Assoc<Option<Box<Profile>>>,
    #[rowsync(many_to_many(
        Person,
        join_through = "favourite_people",
        join_keys("person_id", "favourite_id")
    ))]
    pub favourite_people: Assoc<Vec<Person>>,
    #[rowsync(has_many(Widget, foreign_key = "owner_id"))]
    pub widgets: Assoc<Vec<Widget>>,
}

#[derive(Schema, Clone, Debug, PartialEq, serde::Serialize)]
#[rowsync(table = "posts")]
pub struct Post {
    pub id: i64,
    pub name: String,
    pub person_id: Option<i64>,
    pub other_person_id: Option<i64>,
    #[rowsync(belongs_to(Person, foreign_key = "person_id"))]
    pub person: Assoc<Option<Box<Person>>>,
    #[rowsync(many_to_many(Tag, join_through = PostsTags))]
    pub tags: Assoc<Vec<Tag>>,
    #[rowsync(many_to_many(
        Label,
        join_through = "posts_labels",
        join_keys("post_id", "label_id"),
        order_by = "name desc"
    ))]
    pub labels: Assoc<Vec<Label>>,
}

#[derive(Schema, Clone, Debug, PartialEq, serde::Serialize)]
#[rowsync(table = "tags")]
pub struct Tag {
    pub id: i64,
    pub name: String,
    #[rowsync(many_to_many(Post, join_through = PostsTags, join_keys("tag_id", "post_id")))]
    pub posts: Assoc<Vec<Post>>,
}

#[derive(Schema, Clone, Debug, PartialEq, serde::Serialize)]
#[rowsync(table = "labels")]
pub struct Label {
    pub id: i64,
    pub name: String,
}

/// A join schema with a composite primary key.
#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "posts_tags")]
pub struct PostsTags {
    #[rowsync(primary_key)]
    pub post_id: i64,
    #[rowsync(primary_key)]
    pub tag_id: i64,
    #[rowsync(belongs_to(Post))]
    pub post: Assoc<Option<Box<Post>>>,
    #[rowsync(belongs_to(Tag))]
    pub tag: Assoc<Option<Tag>>,
}

#[derive(Schema, Clone, Debug, PartialEq, serde::Serialize)]
#[rowsync(table = "profiles")]
pub struct Profile {
    pub id: i64,
    pub person_id: Option<i64>,
    pub bio: Option<String>,
}

#[derive(Schema, Clone, Debug, PartialEq, serde::Serialize)]
#[rowsync(table = "widgets", schema = "app")]
pub struct Widget {
    pub id: i32,
    pub label: String,
    pub owner_id: Option<i64>,
    #[rowsync(belongs_to(Person, foreign_key = "owner_id"))]
    pub owner: Assoc<Option<Box<Person>>>,
}

#[derive(TextEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Draft,
    Published,
    #[rowsync(rename = "in-review")]
    InReview,
}

#[derive(TextEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mood {
    Happy,
    Sad,
    SoSo,
}

/// Every supported field type; `short` is a renamed column.
#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "samples")]
pub struct Sample {
    pub id: Uuid,
    pub small: i16,
    pub medium: i32,
    pub big: Option<i64>,
    pub ratio: f32,
    pub precise: Option<f64>,
    pub flag: bool,
    pub body: String,
    #[rowsync(column = "short_name")]
    pub short: Option<String>,
    pub data: Option<Vec<u8>>,
    pub born: Option<NaiveDate>,
    pub alarm: Option<NaiveTime>,
    pub seen_at: Option<NaiveDateTime>,
    pub created_at: DateTime<Utc>,
    pub doc: Option<serde_json::Value>,
    pub status: Status,
    pub feeling: Option<Mood>,
    pub price: Option<rowsync::Decimal>,
    #[rowsync(skip)]
    pub scratch: Vec<String>,
}
