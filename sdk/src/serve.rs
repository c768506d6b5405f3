//! Handles to served deployments: a task, actor, driver or handler calls
//! a deployment of its tenant's applications by name, and gets an
//! `ObjectRef` to its response, so deployments compose (pipelines,
//! routers, "ask three models and take the first two answers within
//! 500 ms" with [`crate::wait`]).
//!
//! ```ignore
//! use prism::http::Request;
//! let converter = prism::serve::handle("converter", "Converter");
//! let r = converter.remote(&Request::get("/").with_query("temp", "100").with_query("type", "CF"))?;
//! assert_eq!(prism::get(&r)?.status(), 200);
//! ```
//!
//! A call goes through the deployment as a request from the ingress
//! would (its replicas, queue, batching, splits, timeout and body limit),
//! without a token: the caller's tenant is its own. Failures the ingress
//! would answer with a status (503, 504, 500) are responses here too.
//!
//! A class deployment's replicas also take method calls, like actors:
//! `handle.method::<u64>("count").arg(5).remote()?` calls `count(5)` on
//! the least loaded replica. Arguments are values (an `ObjectRef` is
//! refused: a replica cannot borrow the caller's objects); failures are
//! errors on `get` (`deadline_exceeded` past the deployment's timeout,
//! `unschedulable` when every replica and the queue are full).

use crate::http::{Request, Response};
use crate::{Error, IntoArg, ObjectId, ObjectRef, Result, sys};
use std::marker::PhantomData;

/// A deployment of one of the caller's tenant's applications.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeploymentHandle {
    app: String,
    deployment: String,
}

/// A handle to deployment `deployment` of application `app`.
pub fn handle(app: &str, deployment: &str) -> DeploymentHandle {
    DeploymentHandle {
        app: app.to_string(),
        deployment: deployment.to_string(),
    }
}

impl DeploymentHandle {
    /// Sends `request`; returns a ref to the response at once. A missing
    /// application or deployment is an `invalid_argument` error on `get`.
    pub fn remote(&self, request: &Request) -> Result<ObjectRef<Response>> {
        let bytes = crate::encode_exact(request)?;
        let mut id = [0u8; 16];
        let code = sys::serve_call(&self.app, &self.deployment, &bytes, &mut id);
        if code != prism_abi::status::OK {
            return Err(Error::from_status(code));
        }
        Ok(ObjectRef::from_id(ObjectId(id)))
    }

    /// A call of method `method` of one of a class deployment's replicas
    /// (the least loaded with room), returning `T`.
    pub fn method<T>(&self, method: &str) -> DeploymentMethodCall<T> {
        DeploymentMethodCall {
            handle: self.clone(),
            method: method.to_string(),
            args: Vec::new(),
            _type: PhantomData,
        }
    }

    /// Sends `request` and waits for the response.
    pub fn call(&self, request: &Request) -> Result<Response> {
        crate::get(&self.remote(request)?)
    }

    /// The application's name.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The deployment's name.
    pub fn deployment(&self) -> &str {
        &self.deployment
    }
}

/// A method call to a class deployment being prepared; `remote` sends it.
#[must_use = "a call does nothing until `remote` is called"]
pub struct DeploymentMethodCall<T> {
    handle: DeploymentHandle,
    method: String,
    args: Vec<u8>,
    _type: PhantomData<fn() -> T>,
}

impl<T> DeploymentMethodCall<T> {
    /// Appends an argument (a value).
    pub fn arg<A>(mut self, value: impl IntoArg<A>) -> Self {
        value.append_to(&mut self.args);
        self
    }

    /// Sends the call; returns a ref to its value at once.
    pub fn remote(self) -> Result<ObjectRef<T>> {
        let mut id = [0u8; 16];
        let code = sys::serve_call_method(
            &self.handle.app,
            &self.handle.deployment,
            &self.method,
            &self.args,
            &mut id,
        );
        if code != prism_abi::status::OK {
            return Err(Error::from_status(code));
        }
        Ok(ObjectRef::from_id(ObjectId(id)))
    }
}
