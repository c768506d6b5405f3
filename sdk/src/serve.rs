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

use crate::http::{Request, Response};
use crate::{Error, ObjectId, ObjectRef, Result, sys};

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
