use std::process::ExitCode;

use clap::Parser;

// The service allocates and frees many small objects from several threads (request bodies,
// persistent-map nodes of the ledger state); glibc's malloc spent about half of the CPU
// time of the HTTP batch benchmark. mimalloc is a drop-in replacement. It is built without
// transparent huge pages (Cargo.toml, feature `no_thp`): the ledger's state grows with every
// gift, and on a virtual machine that hands freed memory back to its host a first touch of a
// 2 MiB page cost ~6× a 4 KiB page's per byte (docs/BENCHMARKS.md, eighth session).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = ledger::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(cli.command.default_log_filter())
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match ledger::cli::run(cli) {
        Ok(code) => code,
        // A closed pipe (`ledger export | head`) is the reader's choice, not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
