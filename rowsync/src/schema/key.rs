//! Primary keys, possibly composite.

use super::Value;

/// A primary key: one value per key column, in the schema's key order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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
