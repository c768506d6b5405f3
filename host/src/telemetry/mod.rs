//! Logging setup: `tracing` to stderr, human-readable or JSON.
//!
//! The filter comes from `PRISM_LOG` (`tracing-subscriber` env-filter
//! syntax); the default is `warn`.

use tracing_subscriber::EnvFilter;

/// Output format of the process log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event (the default).
    #[default]
    Human,
    /// One JSON object per event.
    Json,
}

/// Installs the global subscriber. Safe to call more than once (later calls
/// do nothing).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("PRISM_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
