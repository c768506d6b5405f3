//! An application's configuration: what `prism serve deploy app.yaml`
//! reads (YAML) and sends to the head (as JSON of the same shape), and
//! the head validates before it starts anything.
//!
//! ```yaml
//! name: converter
//! module: converter.wasm        # relative to the file
//! deployments:
//!   - name: Converter
//!     class: ConverterReplica   # or `function: converter`
//!     route_prefix: /Converter
//!     num_replicas: 3
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most deployments in one application.
pub const MAX_DEPLOYMENTS: usize = 32;
/// Most replicas of one deployment.
pub const MAX_REPLICAS: u32 = 256;
/// Largest request body a deployment may accept (16 MiB).
pub const MAX_BODY_LIMIT: u64 = 16 << 20;
/// Longest request timeout (10 minutes).
pub const MAX_REQUEST_TIMEOUT_MS: u64 = 600_000;
/// Most requests one replica may run at once, or queue per deployment.
pub const MAX_CONCURRENCY: u32 = 10_000;
/// Largest `user_config` and `init_args`, as JSON (64 KiB each).
pub const MAX_USER_JSON: usize = 64 << 10;

/// An application: a module and its deployments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Its name, unique in its tenant (letters, digits, `-`, `_`).
    pub name: String,
    /// The namespace it runs in (default `default`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The wasm module: a path (relative to the config file) in the file
    /// the CLI reads (required there); the API takes the uploaded
    /// module's digest instead, so there it may be left out.
    #[serde(default)]
    pub module: String,
    /// Its deployments.
    pub deployments: Vec<DeploymentConfig>,
}

/// One deployment: a function or a class, its replicas and its route.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// Its name, unique in the application.
    pub name: String,
    /// A function deployment: the task export that answers each request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// A class deployment: the actor class each replica is an instance
    /// of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// A class deployment's method that answers requests (default
    /// `call`).
    #[serde(default = "default_method")]
    pub method: String,
    /// A class deployment's constructor arguments, as JSON values
    /// (default none).
    #[serde(default)]
    pub init_args: Vec<serde_json::Value>,
    /// A split deployment: its requests go to these other deployments of
    /// the application, in proportion to the weights (a canary: `{v1: 70,
    /// v2: 30}`; a weight may be 0).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub split: BTreeMap<String, u32>,
    /// The path prefix it answers under (default `/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_prefix: Option<String>,
    /// No route of its own: reached only through a split (default false).
    #[serde(default)]
    pub internal: bool,
    /// How many replicas (default 1); not with `autoscaling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_replicas: Option<u32>,
    /// Replicas by load instead of a fixed number (default: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingConfig>,
    /// Requests answered in batches (default: one at a time): the handler
    /// takes a `Vec<Request>` and returns a `Vec<Response>` of the same
    /// length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchConfig>,
    /// Requests one replica runs at once (default 5, as Ray Serve's
    /// `max_ongoing_requests`; a class replica runs them in order).
    #[serde(default = "five")]
    pub max_ongoing_requests: u32,
    /// Requests that wait for a replica when every one is busy (default
    /// 100); past that the ingress answers 503 with `retry-after`.
    #[serde(default = "hundred")]
    pub max_queued_requests: u32,
    /// From arrival to answer, at most (default 30 000 ms); past it the
    /// ingress answers 504 and the request's task is cancelled.
    #[serde(default = "thirty_seconds")]
    pub request_timeout_ms: u64,
    /// Largest request body (default 1 MiB, at most 16 MiB); a larger
    /// one is answered 413 before it is read.
    #[serde(default = "one_mebibyte")]
    pub max_body_bytes: u64,
    /// Whether requests need no token (default false). Deploying a
    /// public route needs Cedar action `PublishRoute`.
    #[serde(default)]
    pub public: bool,
    /// CPUs per request (function) or per replica (class). Default: 1
    /// per request; a class replica holds none unless it asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_cpus: Option<f64>,
    /// Memory per request or replica, bytes (default: the namespace's
    /// per-task limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// GPU share per request or replica (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_gpus: Option<f64>,
    /// Given to each class replica's `reconfigure` method (if its class
    /// has one) before it takes requests, and again to running replicas
    /// when a redeploy changes only this (default: none, no call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_config: Option<serde_json::Value>,
    /// How often a class replica's `check_health` method (if its class
    /// has one) is called (default 10 000 ms); an error or no answer
    /// within `health_check_timeout_ms` (default 30 000) replaces it.
    #[serde(default = "ten_seconds")]
    pub health_check_period_ms: u64,
    /// See `health_check_period_ms`.
    #[serde(default = "thirty_seconds")]
    pub health_check_timeout_ms: u64,
    /// Custom resources per request or replica (default none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, f64>,
}

/// How a deployment scales with its load: it wants
/// `ceil((running + queued requests) / target_ongoing_requests)` replicas,
/// within `[min_replicas, max_replicas]`, and moves there once that has
/// held for the delay. A request to a deployment at zero replicas starts
/// one at once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoscalingConfig {
    /// Fewest replicas (default 1; 0 scales to zero when idle).
    #[serde(default = "one")]
    pub min_replicas: u32,
    /// Most replicas (required, at least 1).
    pub max_replicas: u32,
    /// Requests (running and queued) each replica should have (default 2).
    #[serde(default = "two")]
    pub target_ongoing_requests: f64,
    /// How long more replicas must be wanted before they start (default
    /// 1000 ms; a wasm replica starts in milliseconds).
    #[serde(default = "one_second")]
    pub upscale_delay_ms: u64,
    /// How long fewer replicas must be wanted before some leave (default
    /// 60 000 ms).
    #[serde(default = "one_minute")]
    pub downscale_delay_ms: u64,
}

/// How requests are gathered into batches: a batch goes to a replica
/// when it holds `max_batch_size` requests, or `batch_wait_timeout_ms`
/// after its first one arrived (as Ray Serve's `@serve.batch`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most requests in one batch (default 10, at most 1000).
    #[serde(default = "ten")]
    pub max_batch_size: u32,
    /// Longest wait for a batch to fill (default 10 ms, at most 10 000).
    #[serde(default = "ten_u64")]
    pub batch_wait_timeout_ms: u64,
}

fn ten() -> u32 {
    10
}
fn ten_u64() -> u64 {
    10
}

fn two() -> f64 {
    2.0
}
fn one_second() -> u64 {
    1_000
}
fn one_minute() -> u64 {
    60_000
}

fn default_namespace() -> String {
    "default".into()
}
fn default_method() -> String {
    "call".into()
}
fn one() -> u32 {
    1
}
fn five() -> u32 {
    5
}
fn hundred() -> u32 {
    100
}
fn ten_seconds() -> u64 {
    10_000
}
fn thirty_seconds() -> u64 {
    30_000
}
fn one_mebibyte() -> u64 {
    1 << 20
}

/// What kind of deployment, and what answers its requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeploymentKind {
    /// Each request is a task of this export.
    Function(String),
    /// Each replica is an actor of this class; requests call `method`.
    Class {
        /// The actor class.
        class: String,
        /// The method that answers requests.
        method: String,
    },
    /// Requests go to other deployments of the application, by weight.
    Split(Vec<(String, u32)>),
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl AppConfig {
    /// Reads a YAML configuration (unknown keys are refused).
    pub fn from_yaml(text: &str) -> Result<AppConfig, ConfigError> {
        serde_saphyr::from_str(text).map_err(|e| ConfigError(format!("app config: {e}")))
    }

    /// Reads the JSON form the API carries.
    pub fn from_json(text: &str) -> Result<AppConfig, ConfigError> {
        if text.len() > 1 << 20 {
            return Err(ConfigError("the app config is larger than 1 MiB".into()));
        }
        serde_json::from_str(text).map_err(|e| ConfigError(format!("app config: {e}")))
    }

    /// Checks names, bounds and routes; fills default route prefixes.
    pub fn validate(mut self) -> Result<AppConfig, ConfigError> {
        let bad = |m: String| Err(ConfigError(m));
        if !valid_name(&self.name) {
            return bad(format!(
                "app name {:?}: 1 to 64 letters, digits, - or _",
                self.name
            ));
        }
        if self.deployments.is_empty() {
            return bad("an app needs at least one deployment".into());
        }
        if self.deployments.len() > MAX_DEPLOYMENTS {
            return bad(format!("an app has at most {MAX_DEPLOYMENTS} deployments"));
        }
        let mut names = std::collections::HashSet::new();
        let mut prefixes = std::collections::HashSet::new();
        for d in &mut self.deployments {
            let name = d.name.clone();
            let here = |m: &str| ConfigError(format!("deployment {name}: {m}"));
            if !valid_name(&d.name) {
                return Err(here("names are 1 to 64 letters, digits, - or _"));
            }
            if !names.insert(d.name.clone()) {
                return Err(here("two deployments have this name"));
            }
            d.kind().map_err(|m| here(&m))?;
            match (&d.num_replicas, &d.autoscaling) {
                (Some(_), Some(_)) => {
                    return Err(here("set num_replicas or autoscaling, not both"));
                }
                (Some(n), None) if *n == 0 || *n > MAX_REPLICAS => {
                    return Err(here(&format!("num_replicas is 1 to {MAX_REPLICAS}")));
                }
                (_, Some(a)) => {
                    if a.max_replicas == 0
                        || a.max_replicas > MAX_REPLICAS
                        || a.min_replicas > a.max_replicas
                    {
                        return Err(here(&format!(
                            "autoscaling needs 0 <= min_replicas <= max_replicas, 1 <= max_replicas <= {MAX_REPLICAS}"
                        )));
                    }
                    if !(a.target_ongoing_requests.is_finite() && a.target_ongoing_requests > 0.0) {
                        return Err(here("autoscaling.target_ongoing_requests must be positive"));
                    }
                    if a.min_replicas == 0 && d.max_queued_requests == 0 {
                        return Err(here(
                            "a deployment that scales to zero needs max_queued_requests >= 1",
                        ));
                    }
                }
                _ => {}
            }
            if d.max_ongoing_requests == 0 || d.max_ongoing_requests > MAX_CONCURRENCY {
                return Err(here(&format!(
                    "max_ongoing_requests is 1 to {MAX_CONCURRENCY}"
                )));
            }
            if d.max_queued_requests > MAX_CONCURRENCY {
                return Err(here(&format!(
                    "max_queued_requests is at most {MAX_CONCURRENCY}"
                )));
            }
            if d.request_timeout_ms == 0 || d.request_timeout_ms > MAX_REQUEST_TIMEOUT_MS {
                return Err(here(&format!(
                    "request_timeout_ms is 1 to {MAX_REQUEST_TIMEOUT_MS}"
                )));
            }
            if d.max_body_bytes > MAX_BODY_LIMIT {
                return Err(here(&format!("max_body_bytes is at most {MAX_BODY_LIMIT}")));
            }
            if serde_json::to_string(&d.init_args).map_or(true, |s| s.len() > MAX_USER_JSON) {
                return Err(here("init_args are larger than 64 KiB"));
            }
            if serde_json::to_string(&d.user_config).map_or(true, |s| s.len() > MAX_USER_JSON) {
                return Err(here("user_config is larger than 64 KiB"));
            }
            if d.health_check_period_ms < 10 || d.health_check_timeout_ms < 10 {
                return Err(here(
                    "health checks are at least 10 ms apart and wait at least 10 ms",
                ));
            }
            if d.internal {
                if d.route_prefix.is_some() {
                    return Err(here("an internal deployment has no route_prefix"));
                }
                continue;
            }
            let prefix = d
                .route_prefix
                .clone()
                .unwrap_or_else(|| format!("/{}", d.name));
            let prefix = super::routes::normalize(&prefix).map_err(|e| here(&e.to_string()))?;
            if !prefixes.insert(prefix.clone()) {
                return Err(here(&format!(
                    "route {prefix} is taken by another deployment"
                )));
            }
            d.route_prefix = Some(prefix);
        }
        // A split leads to deployments with replicas of the same app.
        for d in &self.deployments {
            let here = |m: String| ConfigError(format!("deployment {}: {m}", d.name));
            if let Some(batch) = &d.batch
                && (batch.max_batch_size == 0
                    || batch.max_batch_size > 1000
                    || batch.batch_wait_timeout_ms > 10_000)
            {
                return Err(here(
                    "batch: max_batch_size is 1 to 1000, batch_wait_timeout_ms at most 10000"
                        .into(),
                ));
            }
            if d.split.is_empty() {
                continue;
            }
            if d.num_replicas.is_some() || d.autoscaling.is_some() || d.batch.is_some() {
                return Err(here("a split has no replicas or batches of its own".into()));
            }
            if d.split.values().all(|w| *w == 0) {
                return Err(here("a split needs a weight above 0".into()));
            }
            for target in d.split.keys() {
                match self.deployments.iter().find(|t| t.name == *target) {
                    None => return Err(here(format!("split to {target}: no such deployment"))),
                    Some(t) if !t.split.is_empty() => {
                        return Err(here(format!(
                            "split to {target}: a split cannot lead to a split"
                        )));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(self)
    }
}

impl DeploymentConfig {
    /// Its kind: exactly one of `function`, `class` and `split` is set.
    pub fn kind(&self) -> Result<DeploymentKind, String> {
        match (&self.function, &self.class, self.split.is_empty()) {
            (Some(function), None, true) => Ok(DeploymentKind::Function(function.clone())),
            (None, Some(class), true) => Ok(DeploymentKind::Class {
                class: class.clone(),
                method: self.method.clone(),
            }),
            (None, None, false) => Ok(DeploymentKind::Split(
                self.split.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            )),
            _ => Err("set exactly one of `function`, `class` and `split`".into()),
        }
    }

    /// It, without its `user_config`: two configs that differ only there
    /// can be reconfigured in place.
    pub fn without_user_config(&self) -> DeploymentConfig {
        DeploymentConfig {
            user_config: None,
            ..self.clone()
        }
    }

    /// The replicas it starts with: `num_replicas` (default 1), or the
    /// autoscaling minimum.
    pub fn initial_replicas(&self) -> u32 {
        match &self.autoscaling {
            Some(a) => a.min_replicas,
            None => self.num_replicas.unwrap_or(1),
        }
    }

    /// The route prefix (filled by [`AppConfig::validate`]); `None` for
    /// an internal deployment.
    pub fn prefix(&self) -> Option<String> {
        if self.internal {
            return None;
        }
        Some(
            self.route_prefix
                .clone()
                .unwrap_or_else(|| format!("/{}", self.name)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "
name: converter
module: converter.wasm
deployments:
  - name: Converter
    class: ConverterReplica
    num_replicas: 3
  - name: routes
    function: converter_routes
    route_prefix: /converter/
    max_ongoing_requests: 2
";

    #[test]
    fn yaml_reads_with_defaults_and_routes() {
        let app = AppConfig::from_yaml(APP).unwrap().validate().unwrap();
        assert_eq!(app.namespace, "default");
        let class = &app.deployments[0];
        assert_eq!(
            class.kind().unwrap(),
            DeploymentKind::Class {
                class: "ConverterReplica".into(),
                method: "call".into()
            }
        );
        assert_eq!(class.prefix().as_deref(), Some("/Converter"));
        assert_eq!(class.initial_replicas(), 3);
        assert_eq!(class.max_ongoing_requests, 5);
        assert_eq!(class.max_queued_requests, 100);
        assert_eq!(class.request_timeout_ms, 30_000);
        assert_eq!(class.max_body_bytes, 1 << 20);
        let function = &app.deployments[1];
        assert_eq!(function.prefix().as_deref(), Some("/converter"));
        assert_eq!(
            function.kind().unwrap(),
            DeploymentKind::Function("converter_routes".into())
        );
        // The JSON form the API carries reads back the same.
        let json = serde_json::to_string(&app).unwrap();
        assert_eq!(AppConfig::from_json(&json).unwrap(), app);
    }

    #[test]
    fn autoscaling_starts_at_its_minimum_with_documented_defaults() {
        let yaml = "name: a\nmodule: m\ndeployments:\n  - name: d\n    function: f\n    autoscaling: {min_replicas: 0, max_replicas: 4}\n";
        let app = AppConfig::from_yaml(yaml).unwrap().validate().unwrap();
        let d = &app.deployments[0];
        assert_eq!(d.initial_replicas(), 0);
        let a = d.autoscaling.as_ref().unwrap();
        assert_eq!(a.target_ongoing_requests, 2.0);
        assert_eq!(a.upscale_delay_ms, 1_000);
        assert_eq!(a.downscale_delay_ms, 60_000);
    }

    #[test]
    fn bad_configs_are_refused_saying_why() {
        let refused = |yaml: &str, says: &str| {
            let error = AppConfig::from_yaml(yaml)
                .and_then(AppConfig::validate)
                .unwrap_err()
                .to_string();
            assert!(error.contains(says), "{error:?} should say {says:?}");
        };
        let one = |extra: &str| {
            format!("name: a\nmodule: m.wasm\ndeployments:\n  - name: d\n    function: f\n{extra}")
        };
        refused(&one("    colour: red\n"), "colour");
        refused(&one("    num_replicas: 0\n"), "num_replicas");
        refused(&one("    max_body_bytes: 99999999999\n"), "max_body_bytes");
        refused(&one("    route_prefix: /../x\n"), "route prefix");
        refused(&one("    class: C\n"), "exactly one");
        refused(
            "name: a\nmodule: m\ndeployments:\n  - {name: s, split: {nope: 1}}\n",
            "no such deployment",
        );
        refused(
            "name: a\nmodule: m\ndeployments:\n  - {name: s, split: {v: 0}}\n  - {name: v, function: f}\n",
            "weight above 0",
        );
        refused(
            "name: a\nmodule: m\ndeployments:\n  - {name: s, split: {t: 1}}\n  - {name: t, split: {s: 1}}\n",
            "cannot lead to a split",
        );
        refused(
            "name: a\nmodule: m\ndeployments:\n  - {name: v, function: f, internal: true, route_prefix: /v}\n",
            "internal",
        );
        refused(&one("    batch: {max_batch_size: 0}\n"), "batch");
        refused(
            "name: a\nmodule: m\ndeployments:\n  - {name: s, split: {v: 1}, batch: {}}\n  - {name: v, function: f}\n",
            "no replicas or batches",
        );
        refused(&one("    request_timeout_ms: 0\n"), "request_timeout_ms");
        refused(
            &one("    num_replicas: 2\n    autoscaling: {max_replicas: 3}\n"),
            "not both",
        );
        refused(
            &one("    autoscaling: {min_replicas: 4, max_replicas: 3}\n"),
            "min_replicas",
        );
        refused(
            &one("    autoscaling: {max_replicas: 3, target_ongoing_requests: 0}\n"),
            "positive",
        );
        refused(
            &one(
                "    max_queued_requests: 0\n    autoscaling: {min_replicas: 0, max_replicas: 3}\n",
            ),
            "scales to zero",
        );
        refused("name: a b\nmodule: m\ndeployments: []\n", "app name");
        refused("name: a\nmodule: m\ndeployments: []\n", "at least one");
        refused(
            "name: a\nmodule: m\ndeployments:\n  - {name: d, function: f}\n  - {name: d, function: g}\n",
            "two deployments",
        );
        refused(
            "name: a\nmodule: m\ndeployments:\n  - {name: d, function: f, route_prefix: /x}\n  - {name: e, function: g, route_prefix: /x/}\n",
            "taken",
        );
        // Not YAML at all.
        refused("{{{{", "app config");
    }
}
