//! The `holdfast` command line: parse arguments, load the config, hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use holdfast::config::Config;

#[derive(Parser)]
#[command(
    name = "holdfast",
    version,
    about = "A hardened, single-tenant container registry"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the registry (with no --config: an embedded default on 127.0.0.1:5000, data
    /// under ./holdfast-data, TLS with a generated local CA).
    Serve {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a config file without serving.
    CheckConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let config = match Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("holdfast: {e}");
                    return ExitCode::from(2);
                }
            };
            holdfast::logging::init(&config.log);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("holdfast: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(holdfast::server::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "holdfast stopped");
                    eprintln!("holdfast: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { config } => match Config::load(config.as_deref()) {
            Ok(c) => {
                let what = c
                    .source
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "the embedded default config".into());
                println!("{what}: OK");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("holdfast: {e}");
                ExitCode::from(2)
            }
        },
    }
}
