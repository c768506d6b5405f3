//! The administration commands: `prism tenant`, `prism namespace`,
//! `prism token` and `prism policy` (clients of the `Admin` service,
//! except `token issue --dir` and `policy check`, which work offline).

use super::output::{escape_json, escape_terminal, escape_terminal_lines};
use super::service::ClientArgs;
use crate::security::tenants::{Capabilities, Quotas};
use crate::security::{ClusterFiles, Role, TokenAuthority};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Quota flags; any left out is unlimited.
#[derive(Args, Debug, Clone, Default)]
pub(super) struct QuotaArgs {
    /// CPUs the tenant's work may hold at once.
    #[arg(long)]
    cpus: Option<f64>,
    /// Memory (bytes) it may hold at once.
    #[arg(long)]
    memory: Option<u64>,
    /// GPUs it may hold at once.
    #[arg(long)]
    gpus: Option<f64>,
    /// Bytes of its objects in object stores.
    #[arg(long)]
    object_store_bytes: Option<u64>,
    /// Live actors.
    #[arg(long)]
    actors: Option<u64>,
    /// Tasks submitted and not finished.
    #[arg(long)]
    queued_tasks: Option<u64>,
    /// Jobs running at once.
    #[arg(long)]
    jobs: Option<u64>,
    /// HTTP requests per second to the tenant's served routes.
    #[arg(long)]
    requests_per_second: Option<f64>,
}

impl QuotaArgs {
    fn json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string(&Quotas {
            cpus: self.cpus,
            memory: self.memory,
            gpus: self.gpus,
            object_store_bytes: self.object_store_bytes,
            actors: self.actors,
            queued_tasks: self.queued_tasks,
            jobs: self.jobs,
            requests_per_second: self.requests_per_second,
        })?)
    }
}

#[derive(Args, Debug)]
pub(super) struct TenantArgs {
    #[command(subcommand)]
    command: TenantCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand, Debug)]
enum TenantCommand {
    /// Create a tenant (with its namespace `default`); cluster-admin.
    Create {
        name: String,
        /// Its weight in fair sharing (default: 1).
        #[arg(long, default_value_t = 1.0)]
        weight: f64,
        #[command(flatten)]
        quotas: QuotaArgs,
    },
    /// The tenants (a cluster-admin sees all, others their own).
    List,
    /// Delete a tenant (refused while it runs jobs); cluster-admin.
    Delete { name: String },
    /// Replace a tenant's quotas (flags left out become unlimited);
    /// cluster-admin.
    Quotas {
        name: String,
        /// A new weight (default: unchanged).
        #[arg(long)]
        weight: Option<f64>,
        #[command(flatten)]
        quotas: QuotaArgs,
    },
}

#[derive(Args, Debug)]
pub(super) struct NamespaceArgs {
    #[command(subcommand)]
    command: NamespaceCommand,
    #[command(flatten)]
    client: ClientArgs,
}

/// Capability flags; any left out is the default (nothing extra).
#[derive(Args, Debug, Clone)]
struct CapabilityArgs {
    /// The tenant (default: the token's).
    #[arg(long, default_value = "")]
    tenant: String,
    /// Cap on each task's or actor's memory, bytes (default: the node's).
    #[arg(long)]
    max_task_memory: Option<u64>,
    /// Cap on each call's time, ms (default: the node's).
    #[arg(long)]
    max_task_time_ms: Option<u64>,
    /// Let guests see the job's environment variables (default: no).
    #[arg(long)]
    allow_env: bool,
    /// Resolution of guests' clocks in µs (default: 1000).
    #[arg(long, default_value_t = crate::security::tenants::DEFAULT_CLOCK_RESOLUTION_US)]
    clock_resolution_us: u64,
    /// A host directory guests may read at /data, if the tenant's policy
    /// permits ReadDirectory (cluster-admin only; default: none).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl CapabilityArgs {
    fn json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string(&Capabilities {
            max_task_memory: self.max_task_memory,
            max_task_time_ms: self.max_task_time_ms,
            env: self.allow_env,
            clock_resolution_us: self.clock_resolution_us,
            data_dir: self.data_dir.clone(),
        })?)
    }
}

#[derive(Subcommand, Debug)]
enum NamespaceCommand {
    /// Create a namespace with these capabilities.
    Create {
        name: String,
        #[command(flatten)]
        capabilities: CapabilityArgs,
    },
    /// Replace a namespace's capabilities (flags left out: defaults).
    Update {
        name: String,
        #[command(flatten)]
        capabilities: CapabilityArgs,
    },
    /// A tenant's namespaces.
    List {
        /// The tenant (default: the token's).
        #[arg(long, default_value = "")]
        tenant: String,
    },
    /// Delete a namespace.
    Delete {
        name: String,
        /// The tenant (default: the token's).
        #[arg(long, default_value = "")]
        tenant: String,
    },
}

#[derive(Args, Debug)]
pub(super) struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Issue a token and print it: through the head (a tenant-admin for
    /// its own tenant), or with --dir, signed offline with the cluster's
    /// key.
    Issue {
        /// The cluster's state directory (holds jwt.key): sign here
        /// instead of asking the head.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The tenant it acts for (default: through the head, the
        /// caller's; offline, `default`).
        #[arg(long, default_value = "")]
        tenant: String,
        /// Who the token is for (its `sub`).
        #[arg(long)]
        subject: String,
        /// cluster-admin, tenant-admin, developer or viewer (default: developer).
        #[arg(long, default_value = "developer")]
        role: String,
        /// Lifetime: seconds, or a number with s, m, h or d (default: 1d).
        #[arg(long, default_value = "1d", value_parser = parse_duration)]
        ttl: Duration,
    },
    /// Revoke a token at once, cluster-wide and durably.
    Revoke {
        /// The token (or with --id, the token's id). Not `--token`, which
        /// is the caller's own.
        #[arg(value_name = "TOKEN")]
        target: String,
        /// TOKEN is the token's id (`jti`); cluster-admin only.
        #[arg(long)]
        id: bool,
    },
}

#[derive(Args, Debug)]
pub(super) struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Replace a tenant's own Cedar policies with FILE (validated first;
    /// an invalid file changes nothing).
    Set {
        file: PathBuf,
        /// The tenant (default: the token's).
        #[arg(long, default_value = "")]
        tenant: String,
    },
    /// Print a tenant's own policies.
    Get {
        /// The tenant (default: the token's).
        #[arg(long, default_value = "")]
        tenant: String,
    },
    /// Remove a tenant's own policies (the default set stays).
    Clear {
        /// The tenant (default: the token's).
        #[arg(long, default_value = "")]
        tenant: String,
    },
    /// Check FILE against the schema, offline.
    Check { file: PathBuf },
}

/// Parses `90`, `90s`, `15m`, `12h` or `30d`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number with s, m, h or d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    };
    n.checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

fn print_tenant(t: &prism_client::v1::TenantInfo) -> anyhow::Result<()> {
    outln!(
        "{}\tweight {}\tquotas {}",
        escape_terminal(&t.name),
        t.weight,
        escape_json(&t.quotas_json)
    )
}

pub(super) fn tenant(args: TenantArgs) -> anyhow::Result<i32> {
    super::tokio_runtime()?.block_on(async {
        let mut client = args.client.connect().await?;
        match args.command {
            TenantCommand::Create {
                name,
                weight,
                quotas,
            } => print_tenant(&client.create_tenant(&name, weight, &quotas.json()?).await?)?,
            TenantCommand::List => {
                for t in client.tenants().await? {
                    print_tenant(&t)?;
                }
            }
            TenantCommand::Delete { name } => {
                client.delete_tenant(&name).await?;
                outln!("deleted tenant {}", escape_terminal(&name))?;
            }
            TenantCommand::Quotas {
                name,
                weight,
                quotas,
            } => print_tenant(
                &client
                    .set_quotas(&name, &quotas.json()?, weight.unwrap_or(0.0))
                    .await?,
            )?,
        }
        Ok(0)
    })
}

pub(super) fn namespace(args: NamespaceArgs) -> anyhow::Result<i32> {
    super::tokio_runtime()?.block_on(async {
        let mut client = args.client.connect().await?;
        let print = |n: &prism_client::v1::NamespaceInfo| {
            outln!(
                "{}/{}\t{}",
                escape_terminal(&n.tenant),
                escape_terminal(&n.name),
                escape_json(&n.capabilities_json)
            )
        };
        match args.command {
            NamespaceCommand::Create { name, capabilities } => print(
                &client
                    .put_namespace(&capabilities.tenant, &name, &capabilities.json()?, false)
                    .await?,
            )?,
            NamespaceCommand::Update { name, capabilities } => print(
                &client
                    .put_namespace(&capabilities.tenant, &name, &capabilities.json()?, true)
                    .await?,
            )?,
            NamespaceCommand::List { tenant } => {
                for n in client.namespaces(&tenant).await? {
                    print(&n)?;
                }
            }
            NamespaceCommand::Delete { name, tenant } => {
                client.delete_namespace(&tenant, &name).await?;
                outln!("deleted namespace {}", escape_terminal(&name))?;
            }
        }
        Ok(0)
    })
}

pub(super) fn token(args: TokenArgs) -> anyhow::Result<i32> {
    match args.command {
        TokenCommand::Issue {
            dir: Some(dir),
            tenant,
            subject,
            role,
            ttl,
        } => {
            let role = Role::parse(&role).with_context(|| {
                format!("unknown role {role:?}: cluster-admin, tenant-admin, developer or viewer")
            })?;
            let tenant = if tenant.is_empty() {
                crate::security::DEFAULT_TENANT.to_string()
            } else {
                crate::security::tenants::check_name("tenant", &tenant)?;
                tenant
            };
            // Revocations by id are kept this long.
            anyhow::ensure!(
                ttl <= crate::api::MAX_TOKEN_TTL,
                "--ttl is at most {} days",
                crate::api::MAX_TOKEN_TTL.as_secs() / 86_400
            );
            let authority = TokenAuthority::load(&ClusterFiles::new(dir))?;
            outln!("{}", authority.issue_for(&tenant, &subject, role, ttl)?)?;
            Ok(0)
        }
        TokenCommand::Issue {
            dir: None,
            tenant,
            subject,
            role,
            ttl,
        } => super::tokio_runtime()?.block_on(async {
            let mut client = args.client.connect().await?;
            let reply = client
                .issue_token(&tenant, &subject, &role, ttl.as_secs())
                .await?;
            outln!("{}", escape_terminal(&reply.token))?;
            errln!(
                "token id {} (for `prism token revoke --id`)",
                escape_terminal(&reply.id)
            );
            Ok(0)
        }),
        TokenCommand::Revoke { target, id } => super::tokio_runtime()?.block_on(async {
            let mut client = args.client.connect().await?;
            let reply = if id {
                client.revoke_token("", &target).await?
            } else {
                client.revoke_token(&target, "").await?
            };
            outln!("revoked token {}", escape_terminal(&reply.id))?;
            Ok(0)
        }),
    }
}

pub(super) fn policy(args: PolicyArgs) -> anyhow::Result<i32> {
    let read = |file: &PathBuf| {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
    };
    if let PolicyCommand::Check { file } = &args.command {
        crate::security::policy::validate(&read(file)?)?;
        outln!("{}: valid", file.display())?;
        return Ok(0);
    }
    super::tokio_runtime()?.block_on(async {
        let mut client = args.client.connect().await?;
        match args.command {
            PolicyCommand::Set { file, tenant } => {
                let reply = client.set_policy(&tenant, &read(&file)?).await?;
                outln!(
                    "policies of tenant {} replaced",
                    escape_terminal(&reply.tenant)
                )?;
            }
            PolicyCommand::Get { tenant } => {
                // A tenant's text, over several lines.
                out!(
                    "{}",
                    escape_terminal_lines(&client.policy(&tenant).await?.policies)
                )?;
            }
            PolicyCommand::Clear { tenant } => {
                let reply = client.set_policy(&tenant, "").await?;
                outln!(
                    "policies of tenant {} removed",
                    escape_terminal(&reply.tenant)
                )?;
            }
            PolicyCommand::Check { .. } => {}
        }
        Ok(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(2_592_000)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
