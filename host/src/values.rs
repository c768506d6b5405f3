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
    /// The value's JSON text would be longer than the bound it was
    /// converted under.
    #[error("the value is larger than {limit} bytes as JSON")]
    TooLarge {
        /// The bound, in bytes of JSON text.
        limit: usize,
    },
}

/// Deepest nesting of arrays and maps [`msgpack_to_json_text`] converts
/// (128, as serde_json parses).
pub const MAX_VALUE_DEPTH: usize = 128;

/// Converts one MessagePack value to JSON text of at most `limit` bytes,
/// streaming: memory and time are proportional to the text written, never
/// to what the value claims (a header of four billion elements costs
/// nothing), and the conversion stops as soon as the text passes `limit`.
/// Same mapping as [`msgpack_to_json`], except that a map's repeated keys
/// are written as they come.
pub fn msgpack_to_json_text(bytes: &[u8], limit: usize) -> Result<String, ValueError> {
    let mut cursor = bytes;
    let mut out = String::new();
    transcode(&mut cursor, &mut out, 0, limit)?;
    if !cursor.is_empty() {
        return Err(ValueError::MessagePack(format!(
            "{} trailing bytes after the value",
            cursor.len()
        )));
    }
    Ok(out)
}

fn take<'a>(cursor: &mut &'a [u8], n: usize) -> Result<&'a [u8], ValueError> {
    if cursor.len() < n {
        return Err(ValueError::MessagePack("the value ends early".into()));
    }
    let (head, rest) = cursor.split_at(n);
    *cursor = rest;
    Ok(head)
}

fn uint(cursor: &mut &[u8], n: usize) -> Result<u64, ValueError> {
    Ok(take(cursor, n)?
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

fn transcode(
    cursor: &mut &[u8],
    out: &mut String,
    depth: usize,
    limit: usize,
) -> Result<(), ValueError> {
    use std::fmt::Write;
    if out.len() > limit {
        return Err(ValueError::TooLarge { limit });
    }
    if depth > MAX_VALUE_DEPTH {
        return Err(ValueError::MessagePack(format!(
            "nested deeper than {MAX_VALUE_DEPTH} levels"
        )));
    }
    let marker = take(cursor, 1)?[0];
    // `write!` to a String cannot fail.
    match marker {
        0x00..=0x7f => {
            let _ = write!(out, "{marker}");
        }
        0xe0..=0xff => {
            let _ = write!(out, "{}", marker as i8);
        }
        0xc0 => out.push_str("null"),
        0xc2 => out.push_str("false"),
        0xc3 => out.push_str("true"),
        0xcc..=0xcf => {
            let v = uint(cursor, 1 << (marker - 0xcc))?;
            let _ = write!(out, "{v}");
        }
        0xd0..=0xd3 => {
            let n = 1usize << (marker - 0xd0);
            let raw = uint(cursor, n)?;
            let shift = 64 - 8 * n as u32;
            let _ = write!(out, "{}", ((raw << shift) as i64) >> shift);
        }
        0xca | 0xcb => {
            let f = if marker == 0xca {
                f64::from(f32::from_bits(uint(cursor, 4)? as u32))
            } else {
                f64::from_bits(uint(cursor, 8)?)
            };
            match serde_json::Number::from_f64(f) {
                Some(n) => {
                    let _ = write!(out, "{n}");
                }
                None => out.push_str("null"),
            }
        }
        0xa0..=0xbf | 0xd9..=0xdb => {
            let len = match marker {
                0xd9 => uint(cursor, 1)?,
                0xda => uint(cursor, 2)?,
                0xdb => uint(cursor, 4)?,
                short => u64::from(short & 0x1f),
            };
            let text = String::from_utf8_lossy(take(cursor, len as usize)?);
            let _ = write!(out, "{}", Json::String(text.into_owned()));
        }
        0xc4..=0xc6 => {
            let len = uint(cursor, 1 << (marker - 0xc4))?;
            write_bytes(out, take(cursor, len as usize)?, limit)?;
        }
        0x90..=0x9f | 0xdc | 0xdd => {
            let len = match marker {
                0xdc => uint(cursor, 2)?,
                0xdd => uint(cursor, 4)?,
                short => u64::from(short & 0x0f),
            };
            out.push('[');
            for i in 0..len {
                if i > 0 {
                    out.push(',');
                }
                transcode(cursor, out, depth + 1, limit)?;
            }
            out.push(']');
        }
        0x80..=0x8f | 0xde | 0xdf => {
            let len = match marker {
                0xde => uint(cursor, 2)?,
                0xdf => uint(cursor, 4)?,
                short => u64::from(short & 0x0f),
            };
            out.push('{');
            for i in 0..len {
                if i > 0 {
                    out.push(',');
                }
                // A string key is the key; any other is its JSON text.
                let mut key = String::new();
                let is_string = matches!(cursor.first(), Some(0xa0..=0xbf | 0xd9..=0xdb));
                transcode(cursor, &mut key, depth + 1, limit.saturating_sub(out.len()))?;
                if is_string {
                    out.push_str(&key);
                } else {
                    let _ = write!(out, "{}", Json::String(key));
                }
                out.push(':');
                transcode(cursor, out, depth + 1, limit)?;
            }
            out.push('}');
        }
        0xd4..=0xd8 | 0xc7..=0xc9 => {
            let len = match marker {
                0xc7 => uint(cursor, 1)?,
                0xc8 => uint(cursor, 2)?,
                0xc9 => uint(cursor, 4)?,
                fixed => 1u64 << (fixed - 0xd4),
            };
            let kind = take(cursor, 1)?[0] as i8;
            let _ = write!(out, "{{\"ext\":{kind},\"data\":");
            write_bytes(out, take(cursor, len as usize)?, limit)?;
            out.push('}');
        }
        0xc1 => return Err(ValueError::MessagePack("reserved marker 0xc1".into())),
    }
    if out.len() > limit {
        return Err(ValueError::TooLarge { limit });
    }
    Ok(())
}

fn write_bytes(out: &mut String, bytes: &[u8], limit: usize) -> Result<(), ValueError> {
    use std::fmt::Write;
    out.push('[');
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{b}");
        if out.len() > limit {
            return Err(ValueError::TooLarge { limit });
        }
    }
    out.push(']');
    Ok(())
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

    #[test]
    fn streaming_conversion_matches_the_tree_conversion() {
        let v = serde_json::json!({
            "a": [1, -2, -100, 300, -40000, 2.5, "x", null, true, false],
            "b": {"c": 18446744073709551615u64, "d": -9223372036854775808i64},
            "s": "quote \" and \u{1b} escape",
            "e": [], "m": {}
        });
        let bytes = json_to_msgpack(&v);
        let text = msgpack_to_json_text(&bytes, 1 << 20).unwrap();
        let back: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
        let mut raw = Vec::new();
        rmpv::encode::write_value(
            &mut raw,
            &Mp::Map(vec![
                (Mp::from(7), Mp::Binary(vec![1, 2])),
                (Mp::from("k"), Mp::Ext(3, vec![9])),
                (Mp::from("f"), Mp::F32(1.5)),
            ]),
        )
        .unwrap();
        let text = msgpack_to_json_text(&raw, 1 << 20).unwrap();
        let back: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(back, msgpack_to_json(&raw).unwrap());
    }

    #[test]
    fn streaming_conversion_is_bounded() {
        // 20 million nils: 20 MB of MessagePack, 100 MB of JSON.
        let mut nils = vec![0xdd, 0x01, 0x31, 0x2d, 0x00];
        nils.resize(nils.len() + 20_000_000, 0xc0);
        assert!(matches!(
            msgpack_to_json_text(&nils, 1 << 20),
            Err(ValueError::TooLarge { limit }) if limit == 1 << 20
        ));
        // A header claiming four billion elements, then nothing.
        assert!(matches!(
            msgpack_to_json_text(&[0xdd, 0xff, 0xff, 0xff, 0xff], 1 << 20),
            Err(ValueError::MessagePack(_))
        ));
        // Deep nesting is refused, not a stack overflow.
        let deep = vec![0x91; 100_000];
        assert!(msgpack_to_json_text(&deep, 1 << 20).is_err());
        assert!(msgpack_to_json_text(&[0xc1], 10).is_err());
        assert!(msgpack_to_json_text(&[0x01, 0x02], 10).is_err());
    }
}
