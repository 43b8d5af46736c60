//! Primary keys, possibly composite.

use super::Value;

/// A primary key: one value per key column, in the schema's key order.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key(pub Vec<Value>);

impl Key {
    /// The key's values.
    pub fn values(&self) -> &[Value] {
        &self.0
    }
}

macro_rules! key_from_one {
    ($($ty:ty),*) => {$(
        impl From<$ty> for Key {
            fn from(v: $ty) -> Key {
                Key(vec![v.into()])
            }
        }
    )*};
}

key_from_one!(i16, i32, i64, String, &str, Value);
#[cfg(feature = "uuid")]
key_from_one!(uuid::Uuid);

impl<A: Into<Value>, B: Into<Value>> From<(A, B)> for Key {
    fn from((a, b): (A, B)) -> Key {
        Key(vec![a.into(), b.into()])
    }
}

impl<A: Into<Value>, B: Into<Value>, C: Into<Value>> From<(A, B, C)> for Key {
    fn from((a, b, c): (A, B, C)) -> Key {
        Key(vec![a.into(), b.into(), c.into()])
    }
}

impl From<Vec<Value>> for Key {
    fn from(values: Vec<Value>) -> Key {
        Key(values)
    }
}

/// `7` for a one-column key, `(1, 2)` for a composite one.
impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                f.write_str("(")?;
                for (i, v) in many.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// `#7`, `#(1, 'a')`: the key as a reader writes it, not `Key([I64(7)])`.
impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{self}")
    }
}

impl Key {
    /// The key with its schema's name, for messages: `Post #1`.
    pub fn of<'a>(&'a self, schema: &'a str) -> impl std::fmt::Display + 'a {
        Named { schema, key: self }
    }
}

struct Named<'a> {
    schema: &'a str,
    key: &'a Key,
}

impl std::fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} #{}", self.schema, self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::Key;

    #[test]
    fn keys_read_as_written() {
        assert_eq!(format!("{:?}", Key::from(1i64)), "#1");
        assert_eq!(format!("{}", Key::from(1i64).of("Post")), "Post #1");
        assert_eq!(format!("{:?}", Key::from((1i64, "a"))), "#(1, 'a')");
    }
}
