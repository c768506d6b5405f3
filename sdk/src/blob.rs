//! [`Blob`]: bytes that travel as MessagePack `bin`.

use crate::{Error, ObjectId, ObjectRef, Result, sys};
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

/// The MessagePack `bin` header for `len` bytes.
fn bin_header(len: usize) -> Result<Vec<u8>> {
    Ok(match len {
        0..=0xff => vec![0xc4, len as u8],
        0x100..=0xffff => {
            let mut h = vec![0xc5];
            h.extend_from_slice(&(len as u16).to_be_bytes());
            h
        }
        _ => {
            let len = u32::try_from(len)
                .map_err(|_| Error::Serialization("a blob is limited to 4 GiB".into()))?;
            let mut h = vec![0xc6];
            h.extend_from_slice(&len.to_be_bytes());
            h
        }
    })
}

/// Where the bytes of a MessagePack `bin` value start, and how many there
/// are; `None` if `head` does not start a `bin`.
fn parse_bin_header(head: &[u8]) -> Option<(usize, usize)> {
    match head {
        [0xc4, n, ..] => Some((2, usize::from(*n))),
        [0xc5, a, b, ..] => Some((3, usize::from(u16::from_be_bytes([*a, *b])))),
        [0xc6, a, b, c, d, ..] => Some((5, u32::from_be_bytes([*a, *b, *c, *d]) as usize)),
        _ => None,
    }
}

/// Stores raw bytes as a [`Blob`] object. The host copies them straight out
/// of `bytes`: no encoded copy is made inside the guest, as `put` would.
pub fn put_bytes(bytes: &[u8]) -> Result<ObjectRef<Blob>> {
    let header = bin_header(bytes.len())?;
    let mut id = [0u8; 16];
    match sys::put_parts(&[&header, bytes], &mut id) {
        prism_abi::status::OK => Ok(ObjectRef::from_id(ObjectId(id))),
        code => Err(Error::from_status(code)),
    }
}

/// Gets a [`Blob`] with a single copy: the host writes the bytes straight
/// into the returned buffer, where `get` would copy and then decode. Values
/// that are not a MessagePack `bin` are decoded as `get` does.
pub fn get_blob(r: &ObjectRef<Blob>) -> Result<Blob> {
    let mut len = 0u32;
    match sys::get(&r.id().0, -1, &mut len) {
        prism_abi::status::OK => {
            let total = len as usize;
            let mut head = [0u8; 5];
            let seen = total.min(head.len());
            sys::take_range(&mut head[..seen], 0);
            match parse_bin_header(&head[..seen]) {
                Some((offset, size)) if offset + size == total => {
                    let mut data = Vec::new();
                    sys::take_range_into(&mut data, offset, size);
                    Ok(Blob(data))
                }
                _ => {
                    let all = crate::take_staged(len);
                    rmp_serde::from_slice(&all).map_err(|e| Error::Serialization(e.to_string()))
                }
            }
        }
        prism_abi::status::ERROR_OBJECT => {
            let all = crate::take_staged(len);
            Err(prism_abi::WireError::decode(&all)
                .map(Error::from)
                .unwrap_or_else(|e| Error::Serialization(e.to_string())))
        }
        code => Err(Error::from_status(code)),
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

    #[test]
    fn bin_headers_match_what_the_encoder_writes() {
        for len in [0usize, 5, 255, 256, 65_535, 65_536, 1 << 20] {
            let encoded = prism_abi::encode_value(&Blob(vec![9; len])).unwrap();
            let header = bin_header(len).unwrap();
            assert_eq!(&encoded[..header.len()], header.as_slice(), "len {len}");
            assert_eq!(parse_bin_header(&header), Some((header.len(), len)));
        }
        assert_eq!(parse_bin_header(&[0x90]), None);
    }
}
