//! [`Blob`]: bytes that travel as MessagePack `bin`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Raw bytes that serialize as one MessagePack `bin` value (a single copy),
/// rather than as an array of integers like a plain `Vec<u8>`. Use it for
/// large binary values: images, model weights, tensors.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Blob(pub Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Blob, E> {
                Ok(Blob(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Blob, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Blob(out))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_msgpack_bin() {
        let bytes = prism_abi::encode_value(&Blob(vec![1, 2, 3])).unwrap();
        assert_eq!(bytes, vec![0xc4, 3, 1, 2, 3]);
        let back: Blob = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, Blob(vec![1, 2, 3]));
    }
}
