//! The guest examples of `guest-examples/`, compiled to wasm32-wasip1 by this
//! crate's build script. `prism demo` and the end-to-end tests load them from
//! here, so neither needs a manual build step.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
