use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = ledger::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(cli.command.default_log_filter())
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    match ledger::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
