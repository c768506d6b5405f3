//! The wire contract between `prism` clients and the head: messages and
//! service stubs generated from `proto/prism/v1/prism.proto` (see
//! `docs/api.md`).

#![allow(missing_docs, clippy::all)]

/// Version 1 of the Prism API.
pub mod v1 {
    tonic::include_proto!("prism.v1");
}
