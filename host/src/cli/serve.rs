//! `prism serve`: deploy, inspect and delete served applications on a
//! running cluster, or run one on an embedded cluster for local
//! development.

use super::NodeArgs;
use super::service::ClientArgs;
use crate::serve::{AppConfig, Apps, Ingress};
use anyhow::Context;
use clap::{Args, Subcommand};
use prism_proto::v1::AppInfo;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub(super) struct ServeArgs {
    #[command(subcommand)]
    command: ServeCommand,
    #[command(flatten)]
    client: ClientArgs,
}

// `Run` carries the embedded node's options; the enum is parsed once.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum ServeCommand {
    /// Deploy an application from its config file (YAML): upload its
    /// module, then deploy it, or replace the running one of the same name
    /// without failing a request.
    Deploy {
        /// The application's config file.
        config: PathBuf,
    },
    /// An application's deployments, routes and replicas.
    Status {
        /// The application's name.
        name: String,
    },
    /// The tenant's applications.
    List,
    /// Delete an application: its routes go at once, its replicas once
    /// the requests in flight are answered.
    Delete {
        /// The application's name.
        name: String,
    },
    /// Run an application on an embedded single-process cluster, serving
    /// HTTPS on --http-listen with a fresh self-signed certificate (its
    /// path is printed) and no authentication, until interrupted.
    Run {
        /// The application's config file.
        config: PathBuf,
        /// Where to serve (default: 127.0.0.1:8443).
        #[arg(long, default_value = "127.0.0.1:8443")]
        http_listen: SocketAddr,
        #[command(flatten)]
        node: NodeArgs,
    },
}

/// The config at `path` and its module's bytes (the module path is
/// relative to the config file).
fn read_app(path: &Path) -> anyhow::Result<(AppConfig, Vec<u8>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let config = AppConfig::from_yaml(&text)
        .and_then(AppConfig::validate)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    anyhow::ensure!(
        !config.module.is_empty(),
        "{}: `module` names the application's wasm file",
        path.display()
    );
    let module = path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(&config.module);
    let wasm =
        std::fs::read(&module).with_context(|| format!("reading module {}", module.display()))?;
    Ok((config, wasm))
}

fn print_app(app: &AppInfo) -> anyhow::Result<()> {
    outln!(
        "app {} (tenant {}, namespace {}, module {})",
        app.name,
        app.tenant,
        app.namespace,
        app.module_hash
    )?;
    for d in &app.deployments {
        outln!(
            "  {} {} {} → {}{}: answered {}, 503 {}, 504 {}, 500 {}, 429 {}, unhealthy {}, queued {}",
            d.name,
            d.kind,
            d.handler,
            if d.route_prefix.is_empty() {
                "(internal)"
            } else {
                &d.route_prefix
            },
            if d.public { " (public)" } else { "" },
            d.answered,
            d.overloaded,
            d.timed_out,
            d.failed,
            d.rate_limited,
            d.unhealthy,
            d.queued
        )?;
        for r in &d.replicas {
            outln!(
                "    replica {} {}: {} running, {} served",
                r.id,
                if r.up { "up" } else { "replacing" },
                r.ongoing,
                r.served
            )?;
        }
    }
    Ok(())
}

pub(super) fn serve(args: ServeArgs) -> anyhow::Result<i32> {
    if let ServeCommand::Run {
        config,
        http_listen,
        node,
    } = args.command
    {
        return run_local(&config, http_listen, &node);
    }
    super::tokio_runtime()?.block_on(async {
        let mut client = args.client.connect().await?;
        match args.command {
            ServeCommand::Deploy { config } => {
                let (config, wasm) = read_app(&config)?;
                let upload = client.upload_module(wasm).await?;
                let json = serde_json::to_string(&config)?;
                let app = client.deploy_app(&json, &upload.hash).await?;
                print_app(&app)?;
            }
            ServeCommand::Status { name } => print_app(&client.app(&name).await?)?,
            ServeCommand::List => {
                for app in client.apps().await? {
                    let routes: Vec<&str> = app
                        .deployments
                        .iter()
                        .map(|d| d.route_prefix.as_str())
                        .collect();
                    outln!("{}\t{}\t{}", app.name, app.namespace, routes.join(","))?;
                }
            }
            ServeCommand::Delete { name } => {
                client.delete_app(&name).await?;
                outln!("deleted app {name}")?;
            }
            ServeCommand::Run { .. } => unreachable!("handled above"),
        }
        Ok(0)
    })
}

/// `prism serve run`: one application on an embedded cluster.
fn run_local(path: &Path, http_listen: SocketAddr, node: &NodeArgs) -> anyhow::Result<i32> {
    let (config, wasm) = read_app(path)?;
    let node_config = node.config()?;
    super::tokio_runtime()?.block_on(async {
        let cluster = crate::head::EmbeddedCluster::start(node_config)?;
        let module = cluster.head().upload_module(bytes::Bytes::from(wasm));
        let apps = Apps::new(cluster.node().clone());
        let grant = crate::security::JobGrant::local();
        let namespace =
            crate::security::tenants::NamespaceRef::new(&grant.tenant, &config.namespace);
        let app = apps
            .deploy(namespace, grant, config, module, None)
            .await
            .map_err(|e| anyhow::anyhow!("deploy: {e}"))?;
        // A certificate for this run only: clients trust it by its file.
        let (tls, cert) = throwaway_tls()?;
        let dir = tempfile::tempdir()?;
        let cert_path = dir.path().join("serve-cert.pem");
        std::fs::write(&cert_path, &cert)?;
        let listener = tokio::net::TcpListener::bind(http_listen)
            .await
            .with_context(|| format!("cannot listen on {http_listen}"))?;
        let bound = listener.local_addr()?;
        outln!(
            "prism serve: app {} on https://{bound} (certificate {})",
            app.config.name,
            cert_path.display()
        )?;
        for d in &app.deployments {
            if let Some(prefix) = d.config.prefix() {
                outln!("  https://{bound}{prefix} → {}", d.config.name)?;
            }
        }
        let ingress = Ingress::new(apps.clone(), None);
        ingress
            .serve(listener, tls, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await;
        apps.stop_all().await;
        cluster.shutdown(std::time::Duration::from_secs(5)).await;
        Ok(0)
    })
}

/// A TLS acceptor with a fresh self-signed certificate for `localhost`
/// and `127.0.0.1`, and that certificate (PEM) for clients to trust.
pub(super) fn throwaway_tls() -> anyhow::Result<(tokio_rustls::TlsAcceptor, String)> {
    Ok(Ingress::self_signed()?)
}
