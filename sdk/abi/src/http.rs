//! HTTP requests and responses as a deployment's handler receives and
//! returns them: one MessagePack argument in, one MessagePack value out
//! (structs as maps, bodies as `bin`; see [`crate::encode_value`]).
//!
//! The guest SDK's `prism::http::{Request, Response}` have the same shape
//! and add helpers; the host uses these.

use serde::{Deserialize, Serialize};

/// An HTTP request, as a handler gets it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    /// The method, upper case (`GET`).
    pub method: String,
    /// The path below the deployment's route prefix, starting with `/`
    /// (`/` for the prefix itself), percent-decoded.
    pub path: String,
    /// Query parameters, percent-decoded, in the order they came.
    pub query: Vec<(String, String)>,
    /// Headers, names in lower case, in the order they came.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// An HTTP response, as a handler returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpResponse {
    /// The status code (100–599).
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// Whether the status is a valid HTTP status code (100–599): the host
    /// answers anything else as a 500.
    pub fn status_is_valid(&self) -> bool {
        (100..=599).contains(&self.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_travel_as_bin_and_round_trip() {
        let request = HttpRequest {
            method: "POST".into(),
            path: "/cf".into(),
            query: vec![("temp".into(), "100".into())],
            headers: vec![("content-type".into(), "text/plain".into())],
            body: vec![0, 1, 2, 255],
        };
        let bytes = crate::encode_value(&request).unwrap();
        // The body is one `bin` of 4 bytes, not an array of integers.
        let at = bytes
            .windows(6)
            .position(|w| w == [0xc4, 4, 0, 1, 2, 255])
            .is_some();
        assert!(at, "{bytes:x?}");
        let back: HttpRequest = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, request);
        let response = HttpResponse {
            status: 200,
            headers: Vec::new(),
            body: b"ok".to_vec(),
        };
        let back: HttpResponse =
            rmp_serde::from_slice(&crate::encode_value(&response).unwrap()).unwrap();
        assert_eq!(back, response);
        assert!(back.status_is_valid());
        assert!(
            !HttpResponse {
                status: 99,
                ..response
            }
            .status_is_valid()
        );
    }
}
