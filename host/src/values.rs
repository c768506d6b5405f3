//! JSON ⇄ MessagePack, for values crossing the command line.
//!
//! Arguments given as JSON become MessagePack values; results come back as
//! JSON. Binary values (e.g. object refs) become arrays of byte values;
//! MessagePack extension types become `{"ext": type, "data": [...]}`.

use bytes::Bytes;
use rmpv::Value as Mp;
use serde_json::Value as Json;

/// Errors converting values.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    /// Not valid JSON, or not the expected shape.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// Not valid MessagePack.
    #[error("invalid MessagePack: {0}")]
    MessagePack(String),
}

/// Encodes one JSON value as MessagePack.
pub fn json_to_msgpack(value: &Json) -> Bytes {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, &to_mp(value));
    Bytes::from(out)
}

/// Parses a JSON array of arguments into one MessagePack value each.
/// A non-array is taken as the single argument.
pub fn json_args(text: &str) -> Result<Vec<Bytes>, ValueError> {
    let value: Json = serde_json::from_str(text).map_err(|e| ValueError::Json(e.to_string()))?;
    Ok(match value {
        Json::Array(items) => items.iter().map(json_to_msgpack).collect(),
        other => vec![json_to_msgpack(&other)],
    })
}

/// Decodes one MessagePack value into JSON.
pub fn msgpack_to_json(bytes: &[u8]) -> Result<Json, ValueError> {
    let mut cursor = bytes;
    let value = rmpv::decode::read_value(&mut cursor)
        .map_err(|e| ValueError::MessagePack(e.to_string()))?;
    if !cursor.is_empty() {
        return Err(ValueError::MessagePack(format!(
            "{} trailing bytes after the value",
            cursor.len()
        )));
    }
    Ok(to_json(&value))
}

fn to_mp(value: &Json) -> Mp {
    match value {
        Json::Null => Mp::Nil,
        Json::Bool(b) => Mp::Boolean(*b),
        Json::Number(n) => {
            if let Some(u) = n.as_u64() {
                Mp::from(u)
            } else if let Some(i) = n.as_i64() {
                Mp::from(i)
            } else {
                Mp::F64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Mp::from(s.as_str()),
        Json::Array(items) => Mp::Array(items.iter().map(to_mp).collect()),
        Json::Object(map) => Mp::Map(
            map.iter()
                .map(|(k, v)| (Mp::from(k.as_str()), to_mp(v)))
                .collect(),
        ),
    }
}

fn to_json(value: &Mp) -> Json {
    match value {
        Mp::Nil => Json::Null,
        Mp::Boolean(b) => Json::Bool(*b),
        Mp::Integer(i) => i
            .as_u64()
            .map(Json::from)
            .or_else(|| i.as_i64().map(Json::from))
            .unwrap_or(Json::Null),
        Mp::F32(f) => serde_json::Number::from_f64(f64::from(*f)).map_or(Json::Null, Json::Number),
        Mp::F64(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Mp::String(s) => Json::String(
            s.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(s.as_bytes()).into_owned()),
        ),
        Mp::Binary(b) => Json::Array(b.iter().map(|x| Json::from(*x)).collect()),
        Mp::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Mp::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Mp::String(s) => s.as_str().map(str::to_string).unwrap_or_default(),
                        other => to_json(other).to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Mp::Ext(kind, data) => serde_json::json!({ "ext": kind, "data": data }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_through_msgpack() {
        let v = serde_json::json!({"a": [1, -2, 2.5, "x", null, true], "b": {"c": 18446744073709551615u64}});
        assert_eq!(msgpack_to_json(&json_to_msgpack(&v)).unwrap(), v);
    }

    #[test]
    fn args_are_split_from_an_array() {
        let args = json_args("[5, \"x\"]").unwrap();
        assert_eq!(args.len(), 2);
        let single = json_args("7").unwrap();
        assert_eq!(single.len(), 1);
        assert!(json_args("[1,").is_err());
    }

    #[test]
    fn rust_structs_encoded_as_maps_read_as_objects() {
        #[derive(serde::Serialize)]
        struct P {
            x: u32,
        }
        let bytes = prism_abi::encode_value(&P { x: 3 }).unwrap();
        assert_eq!(
            msgpack_to_json(&bytes).unwrap(),
            serde_json::json!({"x": 3})
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(msgpack_to_json(&[0x92, 0x01]).is_err(), "truncated array");
        assert!(msgpack_to_json(&[0x01, 0x02]).is_err(), "trailing bytes");
    }
}
