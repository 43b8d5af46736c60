-- The one fixture schema of the test suite, in the spirit of EctoSync's test schema.
CREATE TABLE persons (
    id bigserial PRIMARY KEY,
    name text NOT NULL
);

CREATE TABLE posts (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    person_id bigint REFERENCES persons (id) ON DELETE SET NULL,
    other_person_id bigint REFERENCES persons (id) ON DELETE SET NULL
);

CREATE TABLE tags (
    id bigserial PRIMARY KEY,
    name text NOT NULL
);

CREATE TABLE labels (
    id bigserial PRIMARY KEY,
    name text NOT NULL
);

-- join table with a schema of its own (composite primary key, no id)
CREATE TABLE posts_tags (
    post_id bigint NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    tag_id bigint NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    PRIMARY KEY (post_id, tag_id)
);

-- join table known only by name
CREATE TABLE posts_labels (
    post_id bigint NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    label_id bigint NOT NULL REFERENCES labels (id) ON DELETE CASCADE,
    PRIMARY KEY (post_id, label_id)
);

-- self-referential many-to-many
CREATE TABLE favourite_people (
    person_id bigint NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    favourite_id bigint NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    PRIMARY KEY (person_id, favourite_id)
);

CREATE TABLE profiles (
    id bigserial PRIMARY KEY,
    person_id bigint UNIQUE REFERENCES persons (id) ON DELETE CASCADE,
    bio text
);

-- every supported field type, a renamed column, and both kinds of enum
CREATE TYPE mood AS ENUM ('happy', 'sad', 'so_so');

CREATE TABLE samples (
    id uuid PRIMARY KEY,
    small int2 NOT NULL,
    medium int4 NOT NULL,
    big int8,
    ratio float4 NOT NULL,
    precise float8,
    flag bool NOT NULL,
    body text NOT NULL,
    short_name varchar(20),
    data bytea,
    born date,
    alarm time,
    seen_at timestamp,
    created_at timestamptz NOT NULL,
    doc jsonb,
    status text NOT NULL,
    feeling mood,
    price numeric(14, 4)
);

-- a table in its own PostgreSQL schema
CREATE SCHEMA app;
CREATE TABLE app.widgets (
    id int4 PRIMARY KEY,
    label text NOT NULL,
    owner_id bigint REFERENCES persons (id)
);
