//! Cedar authorization: who may do what, on which tenant's resources.
//!
//! Every decision is made by [Cedar](https://www.cedarpolicy.com/) policies
//! against the schema in `policies/schema.cedarschema`:
//!
//! - the principal is the caller, `Prism::User::"<tenant>/<subject>"`, with
//!   its `tenant` and its token's `role` as attributes;
//! - the resource is a namespace (`Prism::Namespace::"<tenant>/<name>"`),
//!   a tenant (`Prism::Tenant::"<name>"`) or the cluster
//!   (`Prism::Cluster::"cluster"`);
//! - the action is one of [`Action`]; the context is empty.
//!
//! The default set (`policies/default.cedar`, built in) is always in force.
//! Each tenant may add a set of its own ([`Policies::set_tenant`]), which is
//! evaluated together with the default set for requests on that tenant's
//! resources only. A set is parsed and validated against the schema in
//! strict mode, together with the default set, before it replaces the old
//! one: a refused set leaves the old one in force.
//!
//! Cedar denies whatever no policy permits, and a `forbid` beats a
//! `permit`. [`Policies::decide`] also fails closed: if evaluating any
//! policy errs, the request is denied.

use crate::sync::RwLockExt;
use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy, PolicyId,
    PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};

use super::Role;

/// The schema every policy set is validated against.
const SCHEMA: &str = include_str!("../../../policies/schema.cedarschema");
/// The default policy set, always in force.
const DEFAULT_POLICIES: &str = include_str!("../../../policies/default.cedar");

/// What a principal asks to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Submit a job into a namespace.
    SubmitJob,
    /// Upload a module to a tenant.
    UploadModule,
    /// Read a job's status and results.
    ReadJob,
    /// Stop a job.
    StopJob,
    /// Read a job's logs.
    ReadLogs,
    /// Guest capability: submit tasks.
    CallTask,
    /// Guest capability: create actors.
    CreateActor,
    /// Guest capability: call actors.
    CallActor,
    /// Guest capability: put objects and named objects.
    PutObject,
    /// Guest capability: get objects and named objects.
    GetObject,
    /// Guest capability: GPU dispatch.
    UseGpu,
    /// Guest capability: the namespace's preopened directory.
    ReadDirectory,
    /// Deploy or delete a served application in a namespace.
    DeployApp,
    /// Call a served application's route in a namespace (HTTP).
    InvokeRoute,
    /// Deploy an application with a public route (no token needed to
    /// call it) into a namespace.
    PublishRoute,
    /// Start a durable workflow in a namespace.
    RunWorkflow,
    /// Read a workflow's status, steps and output.
    ReadWorkflow,
    /// Resume, cancel or delete a workflow.
    ControlWorkflow,
    /// Deliver an event to a workflow.
    SignalWorkflow,
    /// Create or delete a workflow schedule in a namespace.
    ManageSchedule,
    /// Read a tenant's metrics (`/metrics`).
    ReadMetrics,
    /// Manage a tenant.
    ManageTenant,
    /// Manage the cluster.
    ManageCluster,
}

impl Action {
    /// The actions decided once per job, at admission, for its guests:
    /// CallTask, CreateActor, CallActor, PutObject, GetObject, UseGpu, ReadDirectory.
    pub const GUEST: [Action; 7] = [
        Action::CallTask,
        Action::CreateActor,
        Action::CallActor,
        Action::PutObject,
        Action::GetObject,
        Action::UseGpu,
        Action::ReadDirectory,
    ];

    /// Its Cedar name, e.g. "SubmitJob".
    pub fn name(self) -> &'static str {
        match self {
            Action::SubmitJob => "SubmitJob",
            Action::UploadModule => "UploadModule",
            Action::ReadJob => "ReadJob",
            Action::StopJob => "StopJob",
            Action::ReadLogs => "ReadLogs",
            Action::CallTask => "CallTask",
            Action::CreateActor => "CreateActor",
            Action::CallActor => "CallActor",
            Action::PutObject => "PutObject",
            Action::GetObject => "GetObject",
            Action::UseGpu => "UseGpu",
            Action::ReadDirectory => "ReadDirectory",
            Action::DeployApp => "DeployApp",
            Action::InvokeRoute => "InvokeRoute",
            Action::PublishRoute => "PublishRoute",
            Action::RunWorkflow => "RunWorkflow",
            Action::ReadWorkflow => "ReadWorkflow",
            Action::ControlWorkflow => "ControlWorkflow",
            Action::SignalWorkflow => "SignalWorkflow",
            Action::ManageSchedule => "ManageSchedule",
            Action::ReadMetrics => "ReadMetrics",
            Action::ManageTenant => "ManageTenant",
            Action::ManageCluster => "ManageCluster",
        }
    }
}

/// Who asks.
#[derive(Clone, Copy, Debug)]
pub struct Principal<'a> {
    /// The token's subject.
    pub subject: &'a str,
    /// The tenant the subject belongs to.
    pub tenant: &'a str,
    /// The token's role.
    pub role: Role,
}

/// What they ask about.
#[derive(Clone, Copy, Debug)]
pub enum Resource<'a> {
    /// The cluster itself.
    Cluster,
    /// A tenant, by name.
    Tenant(&'a str),
    /// A namespace of a tenant.
    Namespace {
        /// The tenant it belongs to.
        tenant: &'a str,
        /// Its name within the tenant.
        name: &'a str,
    },
}

impl<'a> Resource<'a> {
    /// The tenant it belongs to (None for Cluster).
    pub fn tenant(&self) -> Option<&'a str> {
        match *self {
            Resource::Cluster => None,
            Resource::Tenant(name) => Some(name),
            Resource::Namespace { tenant, .. } => Some(tenant),
        }
    }
}

/// The answer, with the ids of the policies that decided it (empty on a default deny).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// The ids of the policies that decided it, sorted: the permits that
    /// allowed it, or the forbids that denied it (none on a default deny or
    /// when evaluation failed).
    pub policies: Vec<String>,
}

impl Decision {
    fn deny() -> Decision {
        Decision {
            allowed: false,
            policies: Vec::new(),
        }
    }
}

/// Why a policy set was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The text is not Cedar.
    #[error("policy parse error: {0}")]
    Parse(String),
    /// The policies do not fit the schema, or their ids are unusable.
    #[error("policy validation failed: {0}")]
    Invalid(String),
    /// The built-in schema or default set could not be loaded.
    #[error("policy schema: {0}")]
    Schema(String),
    /// The text is over [`MAX_POLICY_BYTES`] or nested deeper than
    /// [`MAX_POLICY_NESTING`]; it was not parsed.
    #[error("policy refused: {0}")]
    TooLarge(String),
}

/// The entity type names of the schema, parsed once.
struct Types {
    user: EntityTypeName,
    namespace: EntityTypeName,
    tenant: EntityTypeName,
    cluster: EntityTypeName,
    action: EntityTypeName,
}

impl Types {
    fn new() -> Result<Types, PolicyError> {
        let parse = |name: &str| {
            name.parse::<EntityTypeName>()
                .map_err(|e| PolicyError::Schema(format!("entity type {name}: {e}")))
        };
        Ok(Types {
            user: parse("Prism::User")?,
            namespace: parse("Prism::Namespace")?,
            tenant: parse("Prism::Tenant")?,
            cluster: parse("Prism::Cluster")?,
            action: parse("Prism::Action")?,
        })
    }
}

/// The cluster's policies: the schema, the default set, and each tenant's own set.
pub struct Policies {
    /// Validates against the schema (and holds it).
    validator: Validator,
    /// The default set alone: for requests on the cluster and on tenants
    /// without a set of their own.
    default: PolicySet,
    /// Per tenant: its text as given, and the default set plus its policies.
    tenants: RwLock<HashMap<String, (String, PolicySet)>>,
    types: Types,
    authorizer: Authorizer,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tenants = self.tenants.read_locked();
        let mut names: Vec<&String> = tenants.keys().collect();
        names.sort();
        f.debug_struct("Policies")
            .field("default_policies", &self.default.num_of_policies())
            .field("tenants_with_policies", &names)
            .finish()
    }
}

impl Policies {
    /// The shipped schema and default set.
    pub fn new() -> Result<Policies, PolicyError> {
        let (schema, _warnings) = Schema::from_cedarschema_str(SCHEMA)
            .map_err(|e| PolicyError::Schema(format!("schema.cedarschema: {e}")))?;
        let validator = Validator::new(schema);
        let types = Types::new()?;
        let in_default = |e: PolicyError| {
            PolicyError::Schema(match e {
                PolicyError::Parse(m)
                | PolicyError::Invalid(m)
                | PolicyError::Schema(m)
                | PolicyError::TooLarge(m) => format!("default.cedar: {m}"),
            })
        };
        let parsed = parse(DEFAULT_POLICIES).map_err(in_default)?;
        let named = named_policies(&parsed, None).map_err(in_default)?;
        let default = PolicySet::from_policies(named)
            .map_err(|e| PolicyError::Schema(format!("default.cedar: {e}")))?;
        check(&validator, &default).map_err(in_default)?;
        Ok(Policies {
            validator,
            default,
            tenants: RwLock::new(HashMap::new()),
            types,
            authorizer: Authorizer::new(),
        })
    }

    /// Parses and validates `text` (strict mode, against the schema,
    /// together with the default set so ids must not collide) and makes it
    /// `tenant`'s set, replacing the old one only on success. Empty text
    /// (or text with no policies, only comments) removes the tenant's set.
    ///
    /// Policy ids: a policy's `@id("...")` annotation when present, else
    /// `<tenant>-policyN` (N counting the file's policies from 0).
    pub fn set_tenant(&self, tenant: &str, text: &str) -> Result<(), PolicyError> {
        match self.combine(Some(tenant), text)? {
            None => self.remove_tenant(tenant),
            Some(combined) => {
                let mut tenants = self.tenants.write_locked();
                tenants.insert(tenant.to_string(), (text.to_string(), combined));
            }
        }
        Ok(())
    }

    /// The tenant's own set as given (None: none).
    pub fn tenant_text(&self, tenant: &str) -> Option<String> {
        let tenants = self.tenants.read_locked();
        tenants.get(tenant).map(|(text, _)| text.clone())
    }

    /// Forgets a tenant's set.
    pub fn remove_tenant(&self, tenant: &str) {
        let mut tenants = self.tenants.write_locked();
        tenants.remove(tenant);
    }

    /// Decides. Evaluated with the default set plus, when the resource
    /// belongs to a tenant, that tenant's set only. A principal whose tenant
    /// differs from the resource's tenant is allowed only if a policy says
    /// so (the default set permits that only for cluster-admin).
    ///
    /// Fails closed: a request the schema does not allow (e.g. an action on
    /// the wrong kind of resource) or whose evaluation errs is denied.
    pub fn decide(
        &self,
        principal: Principal<'_>,
        action: Action,
        resource: Resource<'_>,
    ) -> Decision {
        let (request, entities) = match self.request(principal, action, resource) {
            Ok(built) => built,
            Err(reason) => {
                tracing::warn!(
                    subject = principal.subject,
                    tenant = principal.tenant,
                    action = action.name(),
                    ?resource,
                    "authorization request refused, denying: {reason}"
                );
                return Decision::deny();
            }
        };
        let response = {
            let tenants = self.tenants.read_locked();
            let set = resource
                .tenant()
                .and_then(|tenant| tenants.get(tenant))
                .map_or(&self.default, |(_, combined)| combined);
            self.authorizer.is_authorized(&request, set, &entities)
        };
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| e.to_string())
            .collect();
        if !errors.is_empty() {
            tracing::warn!(
                subject = principal.subject,
                tenant = principal.tenant,
                action = action.name(),
                ?resource,
                "policy evaluation failed, denying: {}",
                errors.join("; ")
            );
            return Decision::deny();
        }
        let mut policies: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|id| id_text(id).to_string())
            .collect();
        policies.sort();
        Decision {
            allowed: response.decision() == cedar_policy::Decision::Allow,
            policies,
        }
    }

    /// The default set plus `text`'s policies, validated; None when `text`
    /// holds no policies. `tenant` names unannotated policies
    /// (`<tenant>-policyN`; `policyN` when None).
    ///
    /// The text is bounded ([`MAX_POLICY_BYTES`], [`MAX_POLICY_NESTING`])
    /// before Cedar sees it, and Cedar's parser and validator run on a
    /// thread of their own with [`PARSER_STACK`] of stack: its parser
    /// recurses once per level of an expression, so a short but deep input
    /// must neither overflow the caller's stack nor take the process down.
    fn combine(&self, tenant: Option<&str>, text: &str) -> Result<Option<PolicySet>, PolicyError> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        check_shape(text)?;
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("policy-parser".into())
                .stack_size(PARSER_STACK)
                .spawn_scoped(scope, || self.combine_checked(tenant, text))
                .map_err(|e| PolicyError::Parse(format!("could not start the parser: {e}")))?
                .join()
                .unwrap_or_else(|_| Err(PolicyError::Parse("the policy parser failed".into())))
        })
    }

    fn combine_checked(
        &self,
        tenant: Option<&str>,
        text: &str,
    ) -> Result<Option<PolicySet>, PolicyError> {
        let parsed = parse(text)?;
        if parsed.is_empty() {
            return Ok(None);
        }
        let fallback: &dyn Fn(&str) -> String = &|id: &str| match tenant {
            Some(tenant) => format!("{tenant}-{id}"),
            None => id.to_string(),
        };
        let own = named_policies(&parsed, Some(fallback))?;
        let mut combined = self.default.clone();
        for policy in own {
            let id = id_text(policy.id()).to_string();
            if combined.policy(policy.id()).is_some() {
                return Err(PolicyError::Invalid(format!(
                    "policy id `{id}` is already used by the default policy set; give the policy another @id"
                )));
            }
            combined
                .add(policy)
                .map_err(|e| PolicyError::Invalid(format!("policy `{id}`: {e}")))?;
        }
        check(&self.validator, &combined)?;
        Ok(Some(combined))
    }

    /// The Cedar request and entities for one question.
    fn request(
        &self,
        principal: Principal<'_>,
        action: Action,
        resource: Resource<'_>,
    ) -> Result<(Request, Entities), String> {
        let types = &self.types;
        let string = |value: &str| RestrictedExpression::new_string(value.to_string());

        let principal_uid = EntityUid::from_type_name_and_id(
            types.user.clone(),
            EntityId::new(format!("{}/{}", principal.tenant, principal.subject)),
        );
        let principal_entity = Entity::new(
            principal_uid.clone(),
            HashMap::from([
                ("tenant".to_string(), string(principal.tenant)),
                ("role".to_string(), string(principal.role.name())),
            ]),
            HashSet::new(),
        )
        .map_err(|e| format!("principal: {e}"))?;

        let (resource_uid, resource_entity) = match resource {
            Resource::Cluster => {
                let uid = EntityUid::from_type_name_and_id(
                    types.cluster.clone(),
                    EntityId::new("cluster"),
                );
                (uid.clone(), Entity::new_no_attrs(uid, HashSet::new()))
            }
            Resource::Tenant(name) => {
                let uid =
                    EntityUid::from_type_name_and_id(types.tenant.clone(), EntityId::new(name));
                let entity = Entity::new(
                    uid.clone(),
                    HashMap::from([("name".to_string(), string(name))]),
                    HashSet::new(),
                )
                .map_err(|e| format!("resource: {e}"))?;
                (uid, entity)
            }
            Resource::Namespace { tenant, name } => {
                let uid = EntityUid::from_type_name_and_id(
                    types.namespace.clone(),
                    EntityId::new(format!("{tenant}/{name}")),
                );
                let entity = Entity::new(
                    uid.clone(),
                    HashMap::from([
                        ("tenant".to_string(), string(tenant)),
                        ("name".to_string(), string(name)),
                    ]),
                    HashSet::new(),
                )
                .map_err(|e| format!("resource: {e}"))?;
                (uid, entity)
            }
        };

        let action_uid =
            EntityUid::from_type_name_and_id(types.action.clone(), EntityId::new(action.name()));
        let schema = self.validator.schema();
        let request = Request::new(
            principal_uid,
            action_uid,
            resource_uid,
            Context::empty(),
            Some(schema),
        )
        .map_err(|e| format!("request: {e}"))?;
        let entities = Entities::from_entities([principal_entity, resource_entity], Some(schema))
            .map_err(|e| format!("entities: {e}"))?;
        Ok((request, entities))
    }
}

/// Checks a policy file against the schema without loading it (for `prism policy check`).
///
/// The same checks as [`Policies::set_tenant`]: it parses, validates in
/// strict mode together with the default set, and refuses ids that collide
/// with the default set's. Unannotated policies are named `policyN`.
pub fn validate(text: &str) -> Result<(), PolicyError> {
    Policies::new()?.combine(None, text).map(|_| ())
}

/// Largest policy set a tenant may install or `prism policy check` reads
/// (64 KiB). Real sets are a few KiB; the bound keeps parsing cheap.
pub const MAX_POLICY_BYTES: usize = 64 << 10;

/// Deepest nesting of brackets (`(`, `[`, `{`) and `if` expressions
/// accepted in a policy set (32).
pub const MAX_POLICY_NESTING: usize = 32;

/// Stack of the thread that parses and validates a set (256 MiB of
/// address space; only the pages a parse touches are ever committed).
const PARSER_STACK: usize = 256 << 20;

/// Refuses text over [`MAX_POLICY_BYTES`] or nested deeper than
/// [`MAX_POLICY_NESTING`], without parsing it: one pass over the bytes,
/// skipping string literals and `//` comments.
fn check_shape(text: &str) -> Result<(), PolicyError> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(PolicyError::TooLarge(format!(
            "the policy set is {} bytes; at most {MAX_POLICY_BYTES} are accepted",
            text.len()
        )));
    }
    let bytes = text.as_bytes();
    let (mut depth, mut ifs, mut i) = (0usize, 0usize, 0usize);
    let too_deep = || {
        PolicyError::TooLarge(format!(
            "the policy set nests brackets or `if` expressions deeper than {MAX_POLICY_NESTING} levels"
        ))
    };
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_POLICY_NESTING {
                    return Err(too_deep());
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            // `if` chains nest without brackets; a policy ends at `;`.
            b'i' if bytes.get(i + 1) == Some(&b'f')
                && (i == 0 || !is_ident(bytes[i - 1]))
                && !bytes.get(i + 2).copied().is_some_and(is_ident) =>
            {
                ifs += 1;
                if ifs > MAX_POLICY_NESTING {
                    return Err(too_deep());
                }
            }
            b';' => ifs = 0,
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Parses a policy file; every parse error is reported.
fn parse(text: &str) -> Result<PolicySet, PolicyError> {
    text.parse::<PolicySet>().map_err(|errors| {
        let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        PolicyError::Parse(messages.join("; "))
    })
}

/// `parsed`'s policies, each renamed to its `@id` annotation, or (without
/// one) to `fallback(parser id)`; without a fallback, an `@id` is required.
/// Refuses templates, empty ids and ids used twice.
fn named_policies(
    parsed: &PolicySet,
    fallback: Option<&dyn Fn(&str) -> String>,
) -> Result<Vec<Policy>, PolicyError> {
    if parsed.num_of_templates() > 0 {
        return Err(PolicyError::Invalid(
            "policy templates (?principal, ?resource) are not supported; write static policies"
                .to_string(),
        ));
    }
    let mut seen = HashSet::new();
    let mut named = Vec::new();
    for policy in parsed.policies() {
        let parser_id = id_text(policy.id());
        let id = match (policy.annotation("id"), fallback) {
            (Some(id), _) if id.trim().is_empty() => {
                return Err(PolicyError::Invalid(format!(
                    "policy `{parser_id}` (counting from 0 in the file) has an empty @id"
                )));
            }
            (Some(id), _) => id.to_string(),
            (None, Some(fallback)) => fallback(parser_id),
            (None, None) => {
                return Err(PolicyError::Invalid(format!(
                    "policy `{parser_id}` (counting from 0 in the file) has no @id annotation"
                )));
            }
        };
        if !seen.insert(id.clone()) {
            return Err(PolicyError::Invalid(format!(
                "two policies have the id `{id}`"
            )));
        }
        named.push(policy.new_id(PolicyId::new(&id)));
    }
    Ok(named)
}

/// Strict validation against the schema; every error is reported.
fn check(validator: &Validator, set: &PolicySet) -> Result<(), PolicyError> {
    let result = validator.validate(set, ValidationMode::Strict);
    if result.validation_passed() {
        return Ok(());
    }
    let messages: Vec<String> = result.validation_errors().map(|e| e.to_string()).collect();
    Err(PolicyError::Invalid(messages.join("; ")))
}

/// A policy id as written (its `Display` escapes it).
fn id_text(id: &PolicyId) -> &str {
    <PolicyId as AsRef<str>>::as_ref(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANALYST: &str = include_str!("../../../policies/examples/analyst.cedar");
    const GPU_ML_ONLY: &str = include_str!("../../../policies/examples/gpu-ml-only.cedar");
    const DATA_READER: &str = include_str!("../../../policies/examples/data-reader.cedar");

    const ALL: [Action; 23] = [
        Action::SubmitJob,
        Action::UploadModule,
        Action::ReadJob,
        Action::StopJob,
        Action::ReadLogs,
        Action::CallTask,
        Action::CreateActor,
        Action::CallActor,
        Action::PutObject,
        Action::GetObject,
        Action::UseGpu,
        Action::ReadDirectory,
        Action::DeployApp,
        Action::InvokeRoute,
        Action::PublishRoute,
        Action::RunWorkflow,
        Action::ReadWorkflow,
        Action::ControlWorkflow,
        Action::SignalWorkflow,
        Action::ManageSchedule,
        Action::ReadMetrics,
        Action::ManageTenant,
        Action::ManageCluster,
    ];

    fn policies() -> Policies {
        Policies::new().expect("the built-in schema and default set load")
    }

    fn user<'a>(tenant: &'a str, subject: &'a str, role: Role) -> Principal<'a> {
        Principal {
            subject,
            tenant,
            role,
        }
    }

    fn ns<'a>(tenant: &'a str, name: &'a str) -> Resource<'a> {
        Resource::Namespace { tenant, name }
    }

    /// The resource kind each action applies to, in `tenant`.
    fn resource_for(action: Action, tenant: &str) -> Resource<'_> {
        match action {
            Action::UploadModule | Action::ManageTenant | Action::ReadMetrics => {
                Resource::Tenant(tenant)
            }
            Action::ManageCluster => Resource::Cluster,
            _ => ns(tenant, "default"),
        }
    }

    fn allowed(
        p: &Policies,
        principal: Principal<'_>,
        action: Action,
        resource: Resource<'_>,
    ) -> bool {
        p.decide(principal, action, resource).allowed
    }

    #[test]
    fn names_and_guest_actions() {
        assert_eq!(Action::SubmitJob.name(), "SubmitJob");
        assert_eq!(Action::ReadDirectory.name(), "ReadDirectory");
        assert!(!Action::GUEST.contains(&Action::SubmitJob));
        assert!(Action::GUEST.contains(&Action::UseGpu));
        assert_eq!(ns("acme", "ml").tenant(), Some("acme"));
        assert_eq!(Resource::Tenant("acme").tenant(), Some("acme"));
        assert_eq!(Resource::Cluster.tenant(), None);
        for role in [
            Role::ClusterAdmin,
            Role::TenantAdmin,
            Role::Developer,
            Role::Viewer,
        ] {
            let json = serde_json::to_value(role).expect("role serializes");
            assert_eq!(json.as_str(), Some(role.name()));
        }
    }

    #[test]
    fn developer_in_own_tenant_only() {
        let p = policies();
        let dev = user("acme", "dan", Role::Developer);
        let d = p.decide(dev, Action::SubmitJob, ns("acme", "default"));
        assert_eq!(
            d,
            Decision {
                allowed: true,
                policies: vec!["developer-namespace".to_string()]
            }
        );
        for action in [
            Action::ReadJob,
            Action::StopJob,
            Action::ReadLogs,
            Action::CallTask,
            Action::CreateActor,
            Action::CallActor,
            Action::PutObject,
            Action::GetObject,
            Action::DeployApp,
            Action::InvokeRoute,
            Action::RunWorkflow,
            Action::ReadWorkflow,
            Action::ControlWorkflow,
            Action::SignalWorkflow,
            Action::ManageSchedule,
        ] {
            assert!(
                allowed(&p, dev, action, ns("acme", "default")),
                "{action:?}"
            );
        }
        // Routes of another tenant: denied.
        assert!(!allowed(
            &p,
            dev,
            Action::InvokeRoute,
            ns("globex", "default")
        ));
        let upload = p.decide(dev, Action::UploadModule, Resource::Tenant("acme"));
        assert!(upload.allowed);
        assert_eq!(upload.policies, vec!["developer-upload".to_string()]);

        // Another tenant's resources: default deny, no policy named.
        let other = p.decide(dev, Action::SubmitJob, ns("globex", "default"));
        assert_eq!(other, Decision::deny());
        assert!(!allowed(
            &p,
            dev,
            Action::UploadModule,
            Resource::Tenant("globex")
        ));

        // Not granted by the default set.
        assert_eq!(
            p.decide(dev, Action::UseGpu, ns("acme", "default")),
            Decision::deny()
        );
        assert!(!allowed(
            &p,
            dev,
            Action::ReadDirectory,
            ns("acme", "default")
        ));
        // Public routes are the tenant's to allow.
        assert!(!allowed(
            &p,
            dev,
            Action::PublishRoute,
            ns("acme", "default")
        ));
        let admin = user("acme", "ada", Role::TenantAdmin);
        assert!(allowed(
            &p,
            admin,
            Action::PublishRoute,
            ns("acme", "default")
        ));
        assert!(!allowed(
            &p,
            dev,
            Action::ManageTenant,
            Resource::Tenant("acme")
        ));
        assert!(!allowed(&p, dev, Action::ManageCluster, Resource::Cluster));
    }

    #[test]
    fn every_member_reads_its_own_tenants_metrics_only() {
        let p = policies();
        for role in [Role::TenantAdmin, Role::Developer, Role::Viewer] {
            let who = user("acme", "m", role);
            assert!(
                allowed(&p, who, Action::ReadMetrics, Resource::Tenant("acme")),
                "{role:?}"
            );
            assert!(
                !allowed(&p, who, Action::ReadMetrics, Resource::Tenant("globex")),
                "{role:?}"
            );
        }
    }

    #[test]
    fn viewer_reads_only() {
        let p = policies();
        let viewer = user("acme", "vic", Role::Viewer);
        assert!(!allowed(
            &p,
            viewer,
            Action::SubmitJob,
            ns("acme", "default")
        ));
        assert!(!allowed(&p, viewer, Action::StopJob, ns("acme", "default")));
        assert!(!allowed(
            &p,
            viewer,
            Action::UploadModule,
            Resource::Tenant("acme")
        ));
        let logs = p.decide(viewer, Action::ReadLogs, ns("acme", "default"));
        assert!(logs.allowed);
        assert_eq!(logs.policies, vec!["viewer-read".to_string()]);
        assert!(allowed(&p, viewer, Action::ReadJob, ns("acme", "default")));
        assert!(!allowed(
            &p,
            viewer,
            Action::ReadLogs,
            ns("globex", "default")
        ));
        assert!(!allowed(
            &p,
            viewer,
            Action::ManageCluster,
            Resource::Cluster
        ));
    }

    #[test]
    fn tenant_admin_owns_its_tenant() {
        let p = policies();
        let admin = user("acme", "ada", Role::TenantAdmin);
        let own = p.decide(admin, Action::ManageTenant, Resource::Tenant("acme"));
        assert!(own.allowed);
        assert_eq!(own.policies, vec!["tenant-admin-tenant".to_string()]);
        assert!(!allowed(
            &p,
            admin,
            Action::ManageTenant,
            Resource::Tenant("globex")
        ));
        for action in ALL {
            let expected = action != Action::ManageCluster;
            assert_eq!(
                allowed(&p, admin, action, resource_for(action, "acme")),
                expected,
                "{action:?}"
            );
            assert!(
                !allowed(&p, admin, action, resource_for(action, "globex")),
                "{action:?}"
            );
        }
        assert!(allowed(&p, admin, Action::UseGpu, ns("acme", "ml")));
        assert!(!allowed(
            &p,
            admin,
            Action::ManageCluster,
            Resource::Cluster
        ));
    }

    #[test]
    fn cluster_admin_may_do_anything() {
        let p = policies();
        let root = user("system", "root", Role::ClusterAdmin);
        for action in ALL {
            for tenant in ["acme", "globex"] {
                let d = p.decide(root, action, resource_for(action, tenant));
                assert!(d.allowed, "{action:?} in {tenant}");
                assert_eq!(d.policies, vec!["cluster-admin-all".to_string()]);
            }
        }
        let manage = p.decide(root, Action::ManageCluster, Resource::Cluster);
        assert!(manage.allowed);
        assert_eq!(manage.policies, vec!["cluster-admin-all".to_string()]);
    }

    #[test]
    fn non_admins_never_manage_the_cluster() {
        let p = policies();
        for role in [Role::TenantAdmin, Role::Developer, Role::Viewer] {
            let d = p.decide(
                user("acme", "x", role),
                Action::ManageCluster,
                Resource::Cluster,
            );
            assert_eq!(d, Decision::deny(), "{role:?}");
        }
    }

    #[test]
    fn action_on_the_wrong_resource_kind_is_denied() {
        let p = policies();
        let root = user("system", "root", Role::ClusterAdmin);
        // The schema has ReadJob apply to namespaces only: the request is
        // refused, and refusing fails closed even for a cluster admin.
        assert_eq!(
            p.decide(root, Action::ReadJob, Resource::Tenant("acme")),
            Decision::deny()
        );
        assert_eq!(
            p.decide(root, Action::ManageCluster, ns("acme", "default")),
            Decision::deny()
        );
    }

    #[test]
    fn examples_validate() {
        for (name, text) in [
            ("analyst", ANALYST),
            ("gpu-ml-only", GPU_ML_ONLY),
            ("data-reader", DATA_READER),
        ] {
            if let Err(e) = validate(text) {
                panic!("{name}: {e}");
            }
        }
        let p = policies();
        for text in [ANALYST, GPU_ML_ONLY, DATA_READER] {
            p.set_tenant("acme", text).expect("example loads");
            assert_eq!(p.tenant_text("acme").as_deref(), Some(text));
        }
    }

    #[test]
    fn analyst_forbid_beats_developer_permit() {
        let p = policies();
        p.set_tenant("acme", ANALYST).expect("analyst loads");
        let ana = user("acme", "ana", Role::Developer);
        let submit = p.decide(ana, Action::SubmitJob, ns("acme", "default"));
        assert!(!submit.allowed);
        assert_eq!(submit.policies, vec!["analyst-read-only".to_string()]);
        assert!(!allowed(
            &p,
            ana,
            Action::UploadModule,
            Resource::Tenant("acme")
        ));
        let read = p.decide(ana, Action::ReadJob, ns("acme", "default"));
        assert!(read.allowed);
        assert_eq!(read.policies, vec!["developer-namespace".to_string()]);
        assert!(allowed(&p, ana, Action::ReadLogs, ns("acme", "default")));
        // Whatever her role.
        let ana_admin = user("acme", "ana", Role::TenantAdmin);
        assert!(!allowed(
            &p,
            ana_admin,
            Action::ManageTenant,
            Resource::Tenant("acme")
        ));
        // Other developers of the tenant are unaffected.
        assert!(allowed(
            &p,
            user("acme", "dan", Role::Developer),
            Action::SubmitJob,
            ns("acme", "default")
        ));
    }

    #[test]
    fn gpu_only_in_ml() {
        let p = policies();
        p.set_tenant("acme", GPU_ML_ONLY)
            .expect("gpu-ml-only loads");
        let dev = user("acme", "dan", Role::Developer);
        let ml = p.decide(dev, Action::UseGpu, ns("acme", "ml"));
        assert!(ml.allowed);
        assert_eq!(ml.policies, vec!["gpu-in-ml".to_string()]);
        let default = p.decide(dev, Action::UseGpu, ns("acme", "default"));
        assert!(!default.allowed);
        assert_eq!(default.policies, vec!["no-gpu-outside-ml".to_string()]);

        // Even a tenant admin gets GPUs only in ml.
        let admin = user("acme", "ada", Role::TenantAdmin);
        assert!(allowed(&p, admin, Action::UseGpu, ns("acme", "ml")));
        assert!(!allowed(&p, admin, Action::UseGpu, ns("acme", "default")));
        // Viewers get none; other tenants' users get none in acme.
        assert!(!allowed(
            &p,
            user("acme", "vic", Role::Viewer),
            Action::UseGpu,
            ns("acme", "ml")
        ));
        assert!(!allowed(
            &p,
            user("globex", "gus", Role::Developer),
            Action::UseGpu,
            ns("acme", "ml")
        ));
        // acme's set does not apply to globex.
        assert!(!allowed(
            &p,
            user("globex", "gus", Role::Developer),
            Action::UseGpu,
            ns("globex", "ml")
        ));
        assert!(allowed(
            &p,
            user("globex", "gil", Role::TenantAdmin),
            Action::UseGpu,
            ns("globex", "default")
        ));
    }

    #[test]
    fn data_reader_reads_data() {
        let p = policies();
        p.set_tenant("acme", DATA_READER)
            .expect("data-reader loads");
        let dev = user("acme", "dan", Role::Developer);
        let data = p.decide(dev, Action::ReadDirectory, ns("acme", "data"));
        assert!(data.allowed);
        assert_eq!(data.policies, vec!["data-reader".to_string()]);
        assert!(!allowed(
            &p,
            dev,
            Action::ReadDirectory,
            ns("acme", "default")
        ));
        assert!(!allowed(
            &p,
            user("globex", "gus", Role::Developer),
            Action::ReadDirectory,
            ns("acme", "data")
        ));
    }

    #[test]
    fn invalid_sets_are_refused_and_the_old_one_stays() {
        let p = policies();
        p.set_tenant("acme", GPU_ML_ONLY)
            .expect("gpu-ml-only loads");
        let dev = user("acme", "dan", Role::Developer);
        let before = p.decide(dev, Action::UseGpu, ns("acme", "ml"));
        assert!(before.allowed);

        let unknown_action =
            r#"@id("fly") permit (principal, action == Prism::Action::"Fly", resource);"#;
        let unknown_attr = r#"
            @id("grown-ups")
            permit (principal, action == Prism::Action::"SubmitJob", resource)
            when { principal.age > 18 };
        "#;
        let wrong_resource = r#"
            @id("wrong")
            permit (principal, action == Prism::Action::"ManageTenant", resource)
            when { resource.tenant == "acme" };
        "#;
        for text in [unknown_action, unknown_attr, wrong_resource] {
            match p.set_tenant("acme", text) {
                Err(PolicyError::Invalid(message)) => assert!(!message.is_empty()),
                other => panic!("expected Invalid for {text}, got {other:?}"),
            }
            assert!(matches!(validate(text), Err(PolicyError::Invalid(_))));
            assert_eq!(p.tenant_text("acme").as_deref(), Some(GPU_ML_ONLY));
            assert_eq!(p.decide(dev, Action::UseGpu, ns("acme", "ml")), before);
            assert!(!allowed(&p, dev, Action::UseGpu, ns("acme", "default")));
        }
    }

    #[test]
    fn syntax_errors_are_parse_errors() {
        let p = policies();
        p.set_tenant("acme", DATA_READER)
            .expect("data-reader loads");
        let text = "permit (principal, action resource);";
        assert!(matches!(
            p.set_tenant("acme", text),
            Err(PolicyError::Parse(_))
        ));
        assert!(matches!(validate(text), Err(PolicyError::Parse(_))));
        assert_eq!(p.tenant_text("acme").as_deref(), Some(DATA_READER));
        let dev = user("acme", "dan", Role::Developer);
        assert!(allowed(&p, dev, Action::ReadDirectory, ns("acme", "data")));
    }

    #[test]
    fn ids_must_not_collide() {
        let p = policies();
        let reuses_default = r#"
            @id("developer-namespace")
            permit (principal, action == Prism::Action::"UseGpu", resource);
        "#;
        assert!(matches!(
            p.set_tenant("acme", reuses_default),
            Err(PolicyError::Invalid(_))
        ));
        assert!(matches!(
            validate(reuses_default),
            Err(PolicyError::Invalid(_))
        ));
        let twice = r#"
            @id("same") permit (principal, action == Prism::Action::"UseGpu", resource);
            @id("same") permit (principal, action == Prism::Action::"ReadDirectory", resource);
        "#;
        assert!(matches!(
            p.set_tenant("acme", twice),
            Err(PolicyError::Invalid(_))
        ));
        let template = r#"@id("t") permit (principal == ?principal, action, resource);"#;
        assert!(matches!(
            p.set_tenant("acme", template),
            Err(PolicyError::Invalid(_))
        ));
        assert_eq!(p.tenant_text("acme"), None);
    }

    #[test]
    fn unannotated_policies_get_tenant_ids() {
        let p = policies();
        let text = r#"
            permit (principal, action == Prism::Action::"ReadDirectory", resource)
            when { resource.tenant == principal.tenant };
            permit (principal, action == Prism::Action::"UseGpu", resource)
            when { resource.tenant == principal.tenant };
        "#;
        p.set_tenant("acme", text).expect("loads");
        let dev = user("acme", "dan", Role::Developer);
        let dir = p.decide(dev, Action::ReadDirectory, ns("acme", "default"));
        assert!(dir.allowed);
        assert_eq!(dir.policies, vec!["acme-policy0".to_string()]);
        let gpu = p.decide(dev, Action::UseGpu, ns("acme", "default"));
        assert_eq!(gpu.policies, vec!["acme-policy1".to_string()]);
    }

    #[test]
    fn empty_text_and_remove_forget_the_set() {
        let p = policies();
        let dev = user("acme", "dan", Role::Developer);
        p.set_tenant("acme", DATA_READER).expect("loads");
        assert!(allowed(&p, dev, Action::ReadDirectory, ns("acme", "data")));
        p.set_tenant("acme", "  \n").expect("empty text removes");
        assert_eq!(p.tenant_text("acme"), None);
        assert!(!allowed(&p, dev, Action::ReadDirectory, ns("acme", "data")));

        p.set_tenant("acme", DATA_READER).expect("loads");
        p.remove_tenant("acme");
        assert_eq!(p.tenant_text("acme"), None);
        assert!(!allowed(&p, dev, Action::ReadDirectory, ns("acme", "data")));
        assert!(validate("").is_ok());
    }

    #[test]
    fn deep_or_large_sets_are_refused_before_parsing_and_the_old_set_stays() {
        let p = policies();
        p.set_tenant("acme", DATA_READER).expect("loads");
        for depth in [150, 1000, 100_000] {
            let text = format!(
                "permit (principal, action, resource) when {{ {}true{} }};",
                "(".repeat(depth),
                ")".repeat(depth)
            );
            let err = p.set_tenant("acme", &text).expect_err("too deep");
            assert!(matches!(err, PolicyError::TooLarge(_)), "{err}");
            assert!(validate(&text).is_err());
        }
        let ifs = format!(
            "permit (principal, action, resource) when {{ {}true{} }};",
            "if true then ".repeat(100),
            " else false".repeat(100)
        );
        assert!(matches!(
            p.set_tenant("acme", &ifs),
            Err(PolicyError::TooLarge(_))
        ));
        let big = format!("// {}\n", "x".repeat(MAX_POLICY_BYTES));
        assert!(matches!(
            p.set_tenant("acme", &big),
            Err(PolicyError::TooLarge(_))
        ));
        assert_eq!(p.tenant_text("acme").as_deref(), Some(DATA_READER));
        // Brackets inside strings and comments are not nesting.
        let quoted = format!(
            "// {}\npermit (principal, action, resource) when {{ principal.tenant == \"{}\" }};",
            "(".repeat(100),
            "[".repeat(100)
        );
        assert!(check_shape(&quoted).is_ok());
    }

    #[test]
    fn a_long_flat_chain_within_the_size_bound_does_not_overflow() {
        // No brackets, no `if`: the depth comes from a left-deep chain of
        // operators, which the parser thread's stack has room for.
        let chain = "true && ".repeat((MAX_POLICY_BYTES - 200) / 8);
        let text = format!("permit (principal, action, resource) when {{ {chain}true }};");
        assert!(text.len() <= MAX_POLICY_BYTES);
        let p = policies();
        let _ = p.set_tenant("acme", &text);
        let dev = user("acme", "dan", Role::Developer);
        let _ = p.decide(dev, Action::ReadJob, ns("acme", "default"));
    }
}
