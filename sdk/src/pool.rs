//! [`ActorPool`]: a fixed set of actors sharing a stream of work, as in
//! Ray's `ActorPool`.
//!
//! Each actor runs at most one submitted call at a time. Work submitted while
//! every actor is busy waits in the pool and is handed to the next actor
//! whose result is collected.

use crate::{ObjectRef, Result};
use serde::de::DeserializeOwned;
use std::collections::VecDeque;

type Work<H, T> = Box<dyn FnOnce(&H) -> ObjectRef<T>>;

/// A pool of actor handles of type `H` whose calls yield `T`.
pub struct ActorPool<H, T> {
    idle: VecDeque<H>,
    in_flight: VecDeque<(ObjectRef<T>, H)>,
    waiting: VecDeque<Work<H, T>>,
}

impl<H: Clone, T: DeserializeOwned> ActorPool<H, T> {
    /// A pool over `actors`.
    pub fn new(actors: impl IntoIterator<Item = H>) -> Self {
        ActorPool {
            idle: actors.into_iter().collect(),
            in_flight: VecDeque::new(),
            waiting: VecDeque::new(),
        }
    }

    /// Submits work: `call` receives an idle actor and starts one call on it.
    /// If none is idle, the work waits for one.
    pub fn submit(&mut self, call: impl FnOnce(&H) -> ObjectRef<T> + 'static) {
        match self.idle.pop_front() {
            Some(actor) => {
                let r = call(&actor);
                self.in_flight.push_back((r, actor));
            }
            None => self.waiting.push_back(Box::new(call)),
        }
    }

    /// Whether any submitted result has not been collected yet.
    pub fn has_next(&self) -> bool {
        !self.in_flight.is_empty() || !self.waiting.is_empty()
    }

    /// Whether an actor is idle.
    pub fn has_free(&self) -> bool {
        !self.idle.is_empty()
    }

    /// The next result in submission order (blocks until it is ready).
    /// `None` when nothing is pending.
    pub fn get_next(&mut self) -> Option<Result<T>> {
        let (r, actor) = self.in_flight.pop_front()?;
        let result = crate::get(&r);
        self.release(actor);
        Some(result)
    }

    /// The first result to be ready, whatever its submission order.
    /// `None` when nothing is pending.
    pub fn get_next_unordered(&mut self) -> Option<Result<T>> {
        if self.in_flight.is_empty() {
            return None;
        }
        let refs: Vec<ObjectRef<T>> = self.in_flight.iter().map(|(r, _)| *r).collect();
        let index = match crate::wait(&refs, 1, None) {
            Ok((ready, _)) => ready
                .first()
                .and_then(|first| refs.iter().position(|r| r == first))
                .unwrap_or(0),
            Err(e) => return Some(Err(e)),
        };
        let (r, actor) = self.in_flight.remove(index)?;
        let result = crate::get(&r);
        self.release(actor);
        Some(result)
    }

    /// Runs `call` for every item across the pool; results in item order.
    /// Fails with the first error met (later results are still collected).
    pub fn map<I: 'static>(
        &mut self,
        items: impl IntoIterator<Item = I>,
        call: impl Fn(&H, I) -> ObjectRef<T> + Clone + 'static,
    ) -> Result<Vec<T>> {
        for item in items {
            let call = call.clone();
            self.submit(move |actor| call(actor, item));
        }
        let mut out = Vec::new();
        let mut first_error = None;
        while let Some(result) = self.get_next() {
            match result {
                Ok(v) => out.push(v),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    fn release(&mut self, actor: H) {
        match self.waiting.pop_front() {
            Some(work) => {
                let r = work(&actor);
                self.in_flight.push_back((r, actor));
            }
            None => self.idle.push_back(actor),
        }
    }
}
