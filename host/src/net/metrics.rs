//! A worker's answer to who may read its `/metrics`: the head's
//! (`NodeControl.CheckMetrics`), cached by the digest of the token for
//! [`DECISION_TTL`] (never past the token's expiry), so a scrape every
//! few seconds costs the head one check per token per ten seconds.

use crate::metrics::Scope;
use crate::metrics::http::MetricsGate;
use crate::security::tenants::TenantId;
use crate::serve::{AuthRefusal, DECISION_TTL};
use crate::sync::{BoxFuture, MutexExt};
use prism_proto::v1 as pb;
use prism_proto::v1::node_control_client::NodeControlClient;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Most tokens whose answers are kept (expired ones leave first; the
/// cache is cleared if all are current).
const CACHED_TOKENS: usize = 10_000;
/// Checks asked of the head at once; more wait (a flood of made-up
/// tokens costs the head at most this many calls at a time).
const ASKS_AT_ONCE: usize = 16;

/// An answer, and until when it may be reused.
type Answer = (Result<Scope, AuthRefusal>, Instant);

/// The head's answers about `/metrics` tokens, cached on a worker.
pub struct RemoteMetricsGate {
    control: NodeControlClient<Channel>,
    answers: Mutex<HashMap<[u8; 32], Answer>>,
    asking: tokio::sync::Semaphore,
}

impl RemoteMetricsGate {
    /// Asks through `control`.
    pub fn new(control: NodeControlClient<Channel>) -> RemoteMetricsGate {
        RemoteMetricsGate {
            control,
            answers: Mutex::default(),
            asking: tokio::sync::Semaphore::new(ASKS_AT_ONCE),
        }
    }

    async fn ask(
        &self,
        authorization: &str,
    ) -> Result<(Result<Scope, AuthRefusal>, Duration), AuthRefusal> {
        let _permit = self
            .asking
            .acquire()
            .await
            .map_err(|e| AuthRefusal::Unavailable(e.to_string()))?;
        let request = pb::CheckMetricsRequest {
            authorization: authorization.to_string(),
        };
        let mut control = self.control.clone();
        let call = tokio::time::timeout(Duration::from_secs(5), control.check_metrics(request));
        let reply = match call.await {
            Ok(Ok(reply)) => reply.into_inner(),
            Ok(Err(status)) => {
                return Err(AuthRefusal::Unavailable(format!(
                    "the head cannot check the token now: {}",
                    status.message()
                )));
            }
            Err(_) => {
                return Err(AuthRefusal::Unavailable(
                    "the head did not check the token in time".into(),
                ));
            }
        };
        let verdict = pb::RouteVerdict::try_from(reply.verdict).unwrap_or(pb::RouteVerdict::Denied);
        Ok(match verdict {
            pb::RouteVerdict::Allowed => {
                let scope = if reply.all {
                    Scope::All
                } else {
                    Scope::Tenant(TenantId::new(&reply.tenant))
                };
                // Whole seconds, rounded down at the head: one less keeps
                // the answer from outliving the token.
                let left = Duration::from_secs(reply.expires_in_s.saturating_sub(1));
                (Ok(scope), DECISION_TTL.min(left))
            }
            pb::RouteVerdict::Unauthenticated => (
                Err(AuthRefusal::Unauthenticated(reply.message)),
                DECISION_TTL,
            ),
            _ => (Err(AuthRefusal::Denied(reply.message)), DECISION_TTL),
        })
    }
}

impl MetricsGate for RemoteMetricsGate {
    fn scope<'a>(
        &'a self,
        authorization: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Scope, AuthRefusal>> {
        Box::pin(async move {
            let Some(authorization) = authorization else {
                return Err(AuthRefusal::Unauthenticated(
                    "missing bearer token (authorization: Bearer …)".into(),
                ));
            };
            let digest: [u8; 32] = {
                use sha2::Digest;
                sha2::Sha256::digest(authorization.as_bytes()).into()
            };
            let now = Instant::now();
            if let Some((answer, until)) = self.answers.locked().get(&digest)
                && now < *until
            {
                return answer.clone();
            }
            let (answer, ttl) = self.ask(authorization).await?;
            let mut answers = self.answers.locked();
            if answers.len() >= CACHED_TOKENS {
                answers.retain(|_, (_, until)| now < *until);
                if answers.len() >= CACHED_TOKENS {
                    answers.clear();
                }
            }
            answers.insert(digest, (answer.clone(), now + ttl));
            answer
        })
    }
}
