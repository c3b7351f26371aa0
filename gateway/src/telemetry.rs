//! Structured logs through tracing. (OpenTelemetry export arrives with the operations issue.)
use crate::config::{LogFormat, LoggingConfig};
use tracing_subscriber::EnvFilter;

pub fn init(cfg: &LoggingConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match cfg.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
