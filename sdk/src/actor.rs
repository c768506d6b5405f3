//! Actors: long-lived guest instances with state, serving method calls one
//! at a time.
//!
//! ```ignore
//! #[prism::actor]
//! struct Counter { n: u64 }
//!
//! #[prism::actor]
//! impl Counter {
//!     fn new(start: u64) -> Self { Counter { n: start } }
//!     fn inc(&mut self) -> u64 { self.n += 1; self.n }
//! }
//!
//! let counter = Counter::remote(10);            // CounterHandle, at once
//! let r = counter.inc().remote();               // ObjectRef<u64>
//! assert_eq!(prism::get(&r)?, 11);
//! ```
//!
//! The struct attribute generates the handle type (`CounterHandle`); the impl
//! attribute generates `Counter::remote`, `Counter::options`, the handle's
//! typed method stubs and the exports the host calls. Handles are plain
//! data: pass them to tasks and other actors, which call them too.
//! `#[prism::actor(persistent)]` on a `Serialize + Deserialize` struct saves
//! its state to the host's durable store after every successful call and
//! restores it when the actor restarts or is re-created under the same
//! name.

use crate::{Error, IntoArg, ObjectId, ObjectRef, Result, sys};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::marker::PhantomData;

/// An actor's unforgeable 128-bit id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActorId(pub [u8; 16]);

impl fmt::Debug for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorId(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl Serialize for ActorId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for ActorId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let r: ObjectRef<()> = ObjectRef::deserialize(d)?;
        Ok(ActorId(r.id().0))
    }
}

/// Implemented by `#[prism::actor]` structs.
pub trait Actor {
    /// The class name the host knows the actor by (the struct's name).
    const CLASS: &'static str;
    /// The generated handle type.
    type Handle: ActorHandle;
}

/// Implemented by generated handle types.
pub trait ActorHandle: Copy + From<ActorId> {
    /// The actor's id.
    fn actor_id(&self) -> ActorId;
}

/// A method call being prepared; `remote` submits it.
#[must_use = "a call does nothing until `remote` is called"]
pub struct ActorCall<T> {
    actor: ActorId,
    method: &'static str,
    args: Vec<u8>,
    _type: PhantomData<fn() -> T>,
}

impl<T> ActorCall<T> {
    #[doc(hidden)]
    pub fn new(actor: ActorId, method: &'static str) -> Self {
        ActorCall {
            actor,
            method,
            args: Vec::new(),
            _type: PhantomData,
        }
    }

    #[doc(hidden)]
    pub fn arg<A>(mut self, value: impl IntoArg<A>) -> Self {
        value.append_to(&mut self.args);
        self
    }

    /// Submits the call; returns its result's ref at once. Calls from one
    /// caller run in the order they were submitted. If the actor is dead,
    /// the ref yields an error of kind `actor_died`.
    pub fn remote(self) -> ObjectRef<T> {
        let mut id = [0u8; 16];
        if sys::actor_call(&self.actor.0, self.method, &self.args, &mut id) != prism_abi::status::OK
        {
            id = [0u8; 16];
        }
        ObjectRef::from_id(ObjectId(id))
    }
}

/// Options for creating an actor, with chained setters; unset options take
/// the defaults documented on each setter.
#[must_use = "nothing is created until `remote` is called"]
pub struct ActorOptions<A: Actor> {
    wire: prism_abi::ActorOptions,
    _actor: PhantomData<fn() -> A>,
}

impl<A: Actor> Default for ActorOptions<A> {
    fn default() -> Self {
        ActorOptions {
            wire: prism_abi::ActorOptions::default(),
            _actor: PhantomData,
        }
    }
}

impl<A: Actor> ActorOptions<A> {
    /// CPUs held for the actor's life. Default: 1 to place it, 0 held while
    /// it lives (as in Ray).
    pub fn num_cpus(mut self, cpus: f64) -> Self {
        self.wire.num_cpus = Some(cpus);
        self
    }

    /// GPUs held for the actor's life: a fraction (0.25) shares one device,
    /// whole numbers take whole devices. Buffers the actor creates stay
    /// resident across its calls. Default 0: the actor may not use a GPU.
    pub fn num_gpus(mut self, gpus: f64) -> Self {
        self.wire.num_gpus = Some(gpus);
        self
    }

    /// Memory held for its life, in bytes; also caps its linear memory.
    /// Default: no reservation and the node's limit (256 MiB).
    pub fn memory(mut self, bytes: u64) -> Self {
        self.wire.memory = Some(bytes);
        self
    }

    /// A custom resource held for its life. Default: none.
    pub fn resource(mut self, name: impl Into<String>, amount: f64) -> Self {
        self.wire.resources.insert(name.into(), amount);
        self
    }

    /// Restarts after its instance dies (panic, trap, limit hit); -1 for
    /// unlimited. Default 0.
    pub fn max_restarts(mut self, restarts: i32) -> Self {
        self.wire.max_restarts = Some(restarts);
        self
    }

    /// Retries of a call whose instance died, on the restarted actor.
    /// Default 0.
    pub fn max_task_retries(mut self, retries: u32) -> Self {
        self.wire.max_task_retries = Some(retries);
        self
    }

    /// A name, unique among live actors of the namespace. Default: none.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.wire.name = Some(name.into());
        self
    }

    /// The namespace of the name. Default: the job's namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.wire.namespace = Some(namespace.into());
        self
    }

    /// Outlive the creating job (`lifetime = detached`). Default: the actor
    /// ends with its job.
    pub fn detached(mut self) -> Self {
        self.wire.detached = true;
        self
    }

    /// Hosts the actor on the node `node_id` (as `prism status` names it).
    /// With `soft`, another node hosts it when that one is gone or cannot;
    /// otherwise the actor is then dead from the start (`unschedulable`).
    /// Default: the creating node while it has room, else the least-loaded
    /// node that has.
    pub fn node(mut self, node_id: impl Into<String>, soft: bool) -> Self {
        self.wire.strategy = prism_abi::SchedulingStrategy::Node {
            node_id: node_id.into(),
            soft,
        };
        self
    }

    /// Hosts actors created this way on the cluster's nodes in turn.
    /// Default: the creating node while it has room.
    pub fn spread(mut self) -> Self {
        self.wire.strategy = prism_abi::SchedulingStrategy::Spread;
        self
    }

    /// With a name: return the live actor of that name if there is one
    /// (its constructor arguments are then ignored). Default: a taken name
    /// is an error.
    pub fn get_if_exists(mut self) -> Self {
        self.wire.get_if_exists = true;
        self
    }

    #[doc(hidden)]
    pub fn create(self, args: &[u8]) -> Result<A::Handle> {
        let mut id = [0u8; 16];
        match sys::actor_create(A::CLASS, args, &self.wire.encode(), &mut id) {
            prism_abi::status::OK => Ok(A::Handle::from(ActorId(id))),
            prism_abi::status::NAME_TAKEN => Err(Error::ActorNameTaken(
                self.wire.name.clone().unwrap_or_default(),
            )),
            code => Err(Error::from_status(code)),
        }
    }
}

/// The live actor named `name` in the job's namespace, as a handle of `A`.
/// An actor of another class, or in another namespace, is not found.
pub fn get_actor<A: Actor>(name: &str) -> Result<A::Handle> {
    get_actor_in::<A>("", name)
}

/// The live actor named `name` in `namespace` (empty: the job's namespace).
pub fn get_actor_in<A: Actor>(namespace: &str, name: &str) -> Result<A::Handle> {
    let mut id = [0u8; 16];
    match sys::actor_lookup(namespace, name, A::CLASS, &mut id) {
        prism_abi::status::OK => Ok(A::Handle::from(ActorId(id))),
        prism_abi::status::NOT_FOUND => Err(Error::ActorNotFound(name.to_string())),
        code => Err(Error::from_status(code)),
    }
}

/// Kills an actor at once, without restart. Calls not yet run, and later
/// calls, yield errors of kind `actor_died`. Killing a dead actor is a no-op.
pub fn kill<H: ActorHandle>(handle: &H) -> Result<()> {
    match sys::actor_kill(&handle.actor_id().0) {
        prism_abi::status::OK => Ok(()),
        code => Err(Error::from_status(code)),
    }
}

/// From inside an actor method: end the actor once this call returns (its
/// result is still delivered). It is not restarted.
pub fn exit_actor() -> Result<()> {
    match sys::actor_exit() {
        prism_abi::status::OK => Ok(()),
        prism_abi::status::NOT_AN_ACTOR => Err(Error::InvalidArgument(
            "exit_actor is only valid inside an actor method".into(),
        )),
        code => Err(Error::from_status(code)),
    }
}
