//! JSON (serde) for what users hold: `Assoc<T>`, `Key`, `Value`. Behind the `serde` feature.
//!
//! Shapes, chosen for a browser reading them:
//! - `Assoc::Loaded(v)` is `v`; `Assoc::NotLoaded` is `null` (and `null` reads back as
//!   `NotLoaded`; a loaded `None` of a "one" association therefore reads back not loaded).
//! - `Value` is its plain JSON value: numbers, strings, booleans, `null`; `bytea` an array of
//!   bytes; dates, times, uuids and `numeric` strings (`numeric` keeps every digit that way).
//!   Read back, a string is `Text` and a JSON array or object `Json` (with the `json`
//!   feature): JSON does not say the column type.
//! - `Key` is its one value, or an array for a composite key.

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, SerializeSeq, Serializer};

use super::{Assoc, Key, Value};

impl<T: Serialize> Serialize for Assoc<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Assoc::Loaded(value) => value.serialize(serializer),
            Assoc::NotLoaded => serializer.serialize_none(),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Assoc<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(deserializer)? {
            Some(value) => Assoc::Loaded(value),
            None => Assoc::NotLoaded,
        })
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_none(),
            Value::Bool(v) => serializer.serialize_bool(*v),
            Value::I16(v) => serializer.serialize_i16(*v),
            Value::I32(v) => serializer.serialize_i32(*v),
            Value::I64(v) => serializer.serialize_i64(*v),
            Value::F32(v) => serializer.serialize_f32(*v),
            Value::F64(v) => serializer.serialize_f64(*v),
            Value::Text(v) => serializer.serialize_str(v),
            Value::Bytes(v) => {
                let mut seq = serializer.serialize_seq(Some(v.len()))?;
                for byte in v {
                    seq.serialize_element(byte)?;
                }
                seq.end()
            }
            #[cfg(feature = "uuid")]
            Value::Uuid(v) => serializer.collect_str(v),
            #[cfg(feature = "json")]
            Value::Json(v) => v.serialize(serializer),
            #[cfg(feature = "chrono")]
            Value::Date(v) => serializer.collect_str(v),
            #[cfg(feature = "chrono")]
            Value::Time(v) => serializer.collect_str(v),
            #[cfg(feature = "chrono")]
            Value::Timestamp(v) => serializer.collect_str(&v.format("%Y-%m-%dT%H:%M:%S%.f")),
            #[cfg(feature = "chrono")]
            Value::TimestampTz(v) => {
                serializer.collect_str(&v.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            }
            #[cfg(feature = "decimal")]
            Value::Numeric(v) => serializer.collect_str(v),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = serde_json::Value::deserialize(deserializer)?;
        value_from_json(json).map_err(serde::de::Error::custom)
    }
}

fn value_from_json(json: serde_json::Value) -> Result<Value, &'static str> {
    Ok(match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(v) => Value::Bool(v),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::I64(i),
            (None, Some(f)) => Value::F64(f),
            (None, None) => return Err("a number out of the range of int8 and float8"),
        },
        serde_json::Value::String(s) => Value::Text(s),
        #[cfg(feature = "json")]
        other => Value::Json(other),
        #[cfg(not(feature = "json"))]
        _ => return Err("a JSON array or object needs rowsync's `json` feature"),
    })
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => one.serialize(serializer),
            many => many.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = serde_json::Value::deserialize(deserializer)?;
        let values = match json {
            serde_json::Value::Array(items) => items
                .into_iter()
                .map(value_from_json)
                .collect::<Result<Vec<_>, _>>(),
            one => value_from_json(one).map(|v| vec![v]),
        };
        values.map(Key).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_are_plain_json() {
        assert_eq!(serde_json::to_string(&Key::from(7i64)).unwrap(), "7");
        assert_eq!(
            serde_json::to_string(&Key::from((1i64, "a"))).unwrap(),
            r#"[1,"a"]"#
        );
        let back: Key = serde_json::from_str(r#"[1,"a"]"#).unwrap();
        assert_eq!(back, Key::from((1i64, "a")));
        assert_eq!(serde_json::to_string(&Value::Null).unwrap(), "null");
        assert_eq!(
            serde_json::to_string(&Value::Bytes(vec![1, 2])).unwrap(),
            "[1,2]"
        );
    }

    #[test]
    fn an_association_not_loaded_is_null() {
        let loaded: Assoc<Vec<i32>> = Assoc::Loaded(vec![1, 2]);
        assert_eq!(serde_json::to_string(&loaded).unwrap(), "[1,2]");
        let not: Assoc<Vec<i32>> = Assoc::NotLoaded;
        assert_eq!(serde_json::to_string(&not).unwrap(), "null");
        assert_eq!(
            serde_json::from_str::<Assoc<Vec<i32>>>("null").unwrap(),
            Assoc::NotLoaded
        );
        assert_eq!(
            serde_json::from_str::<Assoc<Vec<i32>>>("[3]").unwrap(),
            Assoc::Loaded(vec![3])
        );
    }
}
