//! Counts every call the head's gRPC server answers, by method and
//! gRPC status code (`prism_api_calls_total`): a layer around the whole
//! server. The code is the one the response's headers carry (an error
//! answered before any message); a call whose status comes only in the
//! trailers counts as `0`. A path that names no method (status 12,
//! unimplemented) counts as `unknown`, so made-up paths cannot add
//! series.

use crate::metrics::NodeMetrics;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The layer: wraps the server's routes in [`Metered`].
pub fn layer(
    metrics: Arc<NodeMetrics>,
) -> impl tower_layer::Layer<tonic::service::Routes, Service = Metered<tonic::service::Routes>> + Clone
{
    tower_layer::layer_fn(move |inner| Metered {
        inner,
        metrics: metrics.clone(),
    })
}

/// A service whose calls are counted.
#[derive(Clone)]
pub struct Metered<S> {
    inner: S,
    metrics: Arc<NodeMetrics>,
}

impl<S, B, R> tower_service::Service<http::Request<B>> for Metered<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_string();
        let metrics = self.metrics.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("0");
            let method = if code == "12" {
                "unknown"
            } else {
                method.as_str()
            };
            metrics.api_call(method, code);
            Ok(response)
        })
    }
}
