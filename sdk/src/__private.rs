//! Support code for the `#[prism::task]` and `#[prism::main]` expansions.
//! Not a stable API: only the macros call it.

use crate::{ObjectId, ObjectRef, TaskOptions, sys};
use prism_abi::{ErrorKind, WireError, output_kind};
use serde::{Serialize, de::DeserializeOwned};
use std::fmt::Display;
use std::sync::Once;

pub use rmp_serde;
pub use serde;

/// What an exported task hands back to the host.
pub enum TaskOutput {
    /// The MessagePack return value.
    Value(Vec<u8>),
    /// An application error (the function returned `Err`).
    Error(WireError),
}

/// Runs one exported entry point: reads and decodes the input (padding
/// missing trailing arguments with nil, so `Option` parameters may be
/// omitted), calls `f`, and hands its output to the host.
pub fn run_entry<Args: DeserializeOwned>(
    input_len: u32,
    arity: u32,
    f: impl FnOnce(Args) -> TaskOutput,
) {
    install_panic_hook();
    let mut input = vec![0u8; input_len as usize];
    sys::input_read(&mut input);
    let input = prism_abi::pad_input(input, arity);
    let output = match rmp_serde::from_slice::<Args>(&input) {
        Ok(args) => f(args),
        Err(e) => TaskOutput::Error(WireError::new(
            ErrorKind::InvalidArgument,
            format!("could not decode the task's arguments: {e}"),
        )),
    };
    emit(output);
}

thread_local! {
    /// The actor this instance hosts, once its constructor (or restore) ran.
    static ACTOR: std::cell::RefCell<Option<Box<dyn std::any::Any>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs an actor constructor: on success the value becomes this instance's
/// actor state and the output is unit.
pub fn run_actor_new<A: 'static, Args: DeserializeOwned>(
    input_len: u32,
    arity: u32,
    f: impl FnOnce(Args) -> Result<A, TaskOutput>,
) {
    run_entry::<Args>(input_len, arity, |args| match f(args) {
        Ok(actor) => {
            ACTOR.with(|slot| *slot.borrow_mut() = Some(Box::new(actor)));
            ok(&())
        }
        Err(output) => output,
    })
}

/// Runs an actor method on this instance's state.
pub fn run_actor_method<A: 'static, Args: DeserializeOwned>(
    input_len: u32,
    arity: u32,
    f: impl FnOnce(&mut A, Args) -> TaskOutput,
) {
    run_entry::<Args>(input_len, arity, |args| {
        ACTOR.with(|slot| {
            match slot
                .borrow_mut()
                .as_mut()
                .and_then(|b| b.downcast_mut::<A>())
            {
                Some(actor) => f(actor, args),
                None => TaskOutput::Error(WireError::new(
                    ErrorKind::ActorDied,
                    "the actor has no state: its constructor did not run in this instance",
                )),
            }
        })
    })
}

/// Outputs a persistent actor's state.
pub fn run_actor_save<A: Serialize + 'static>() {
    install_panic_hook();
    let output =
        ACTOR.with(
            |slot| match slot.borrow().as_ref().and_then(|b| b.downcast_ref::<A>()) {
                Some(actor) => ok(actor),
                None => TaskOutput::Error(WireError::new(
                    ErrorKind::ActorDied,
                    "no actor state to save",
                )),
            },
        );
    emit(output);
}

/// Restores a persistent actor's state from the saved value (the input
/// buffer is the state itself, not an argument array).
pub fn run_actor_restore<A: DeserializeOwned + 'static>(input_len: u32) {
    install_panic_hook();
    let mut input = vec![0u8; input_len as usize];
    sys::input_read(&mut input);
    let output = match rmp_serde::from_slice::<A>(&input) {
        Ok(actor) => {
            ACTOR.with(|slot| *slot.borrow_mut() = Some(Box::new(actor)));
            ok(&())
        }
        Err(e) => TaskOutput::Error(WireError::new(
            ErrorKind::InvalidArgument,
            format!("could not restore the saved actor state: {e}"),
        )),
    };
    emit(output);
}

fn emit(output: TaskOutput) {
    match output {
        TaskOutput::Value(bytes) => sys::output(output_kind::VALUE, &bytes),
        TaskOutput::Error(err) => sys::output(output_kind::APPLICATION_ERROR, &err.encode()),
    }
}

/// Wraps a successful return value.
pub fn ok<T: Serialize + ?Sized>(value: &T) -> TaskOutput {
    match prism_abi::encode_value(value) {
        Ok(bytes) => TaskOutput::Value(bytes),
        Err(e) => TaskOutput::Error(WireError::new(
            ErrorKind::InvalidArgument,
            format!("could not encode the task's return value: {e}"),
        )),
    }
}

/// Wraps an application error with its message and optional payload.
pub fn err<E: Display + ?Sized>(error: &E, payload: Option<Vec<u8>>) -> TaskOutput {
    let mut wire = WireError::new(ErrorKind::Application, error.to_string());
    wire.payload = payload;
    TaskOutput::Error(wire)
}

/// Submits `function` of this module with an encoded argument buffer.
pub fn submit<T>(function: &str, options: &TaskOptions, args: &[u8]) -> ObjectRef<T> {
    let opts = options.to_wire().encode();
    let mut id = [0u8; 16];
    // The host answers every well-formed submit with OK and puts any failure
    // into the object itself; anything else leaves the all-zero id, which no
    // object ever has, so `get` reports `ObjectNotFound`.
    if sys::submit(function, args, &opts, &mut id) != prism_abi::status::OK {
        id = [0u8; 16];
    }
    ObjectRef::from_id(ObjectId(id))
}

fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            sys::panic_message(&info.to_string());
        }))
    });
}

/// Autoref specialization: an application error's payload is its
/// MessagePack encoding when the error type is `Serialize`, else `None`.
/// Call as `(&ErrPayload(&e)).payload()` on a concrete type.
pub struct ErrPayload<'a, E: ?Sized>(pub &'a E);

/// Chosen when `E: Serialize`.
pub trait PayloadViaSerialize {
    /// The encoded error.
    fn payload(&self) -> Option<Vec<u8>>;
}

impl<E: Serialize + ?Sized> PayloadViaSerialize for ErrPayload<'_, E> {
    fn payload(&self) -> Option<Vec<u8>> {
        prism_abi::encode_value(self.0).ok()
    }
}

/// Chosen for every other `E`.
pub trait PayloadViaNothing {
    /// No payload.
    fn payload(&self) -> Option<Vec<u8>>;
}

impl<E: ?Sized> PayloadViaNothing for &ErrPayload<'_, E> {
    fn payload(&self) -> Option<Vec<u8>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NotSerialize;

    #[test]
    // The explicit borrow is what selects the implementation.
    #[allow(clippy::needless_borrow)]
    fn serializable_errors_carry_a_payload() {
        let e = String::from("boom");
        assert!((&ErrPayload(&e)).payload().is_some());
        assert!((&ErrPayload(&NotSerialize)).payload().is_none());
    }
}
