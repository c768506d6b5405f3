//! Named objects: values that live in the job's namespace under a name until
//! deleted, across jobs — `put_named("model/42", &m)` in one stage,
//! `get_named::<Model>("model/42")` in another.
//!
//! Two tiers: [`Tier::Memory`] (fast; lost when the node restarts) and
//! [`Tier::Durable`] (written to the node's durable store; survives
//! restarts). Putting a name again replaces its value, whatever the tier.

use crate::{Error, Result, sys};
use serde::{Serialize, de::DeserializeOwned};

/// Where a named object is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Tier {
    /// In the node's memory (the default): fast, lost on restart.
    #[default]
    Memory,
    /// On disk in the node's durable store: survives restarts.
    Durable,
}

/// Stores `value` under `name` in memory (see [`put_named_in`] for tiers).
pub fn put_named<T: Serialize + ?Sized>(name: &str, value: &T) -> Result<()> {
    put_named_in(name, value, Tier::Memory)
}

/// Stores `value` under `name` in the given tier, replacing any value the
/// name had.
pub fn put_named_in<T: Serialize + ?Sized>(name: &str, value: &T, tier: Tier) -> Result<()> {
    let bytes = crate::encode_exact(value)?;
    let tier = match tier {
        Tier::Memory => prism_abi::tier::MEMORY,
        Tier::Durable => prism_abi::tier::DURABLE,
    };
    match sys::named_put(name, &bytes, tier) {
        prism_abi::status::OK => Ok(()),
        code => Err(Error::from_status(code)),
    }
}

/// The value stored under `name`; [`Error::ObjectNotFound`] if there is none.
pub fn get_named<T: DeserializeOwned>(name: &str) -> Result<T> {
    let mut len = 0u32;
    match sys::named_get(name, &mut len) {
        prism_abi::status::OK => {
            let buf = crate::take_staged(len);
            rmp_serde::from_slice(&buf).map_err(|e| Error::Serialization(e.to_string()))
        }
        code => Err(Error::from_status(code)),
    }
}

/// Deletes `name`; returns whether it existed.
pub fn delete_named(name: &str) -> Result<bool> {
    match sys::named_delete(name) {
        prism_abi::status::OK => Ok(true),
        prism_abi::status::NOT_FOUND => Ok(false),
        code => Err(Error::from_status(code)),
    }
}

/// The names in the namespace that start with `prefix`, sorted.
pub fn list_named(prefix: &str) -> Result<Vec<String>> {
    let mut len = 0u32;
    match sys::named_list(prefix, &mut len) {
        prism_abi::status::OK => {
            let buf = crate::take_staged(len);
            rmp_serde::from_slice(&buf).map_err(|e| Error::Serialization(e.to_string()))
        }
        code => Err(Error::from_status(code)),
    }
}
