//! The `holdfast` command line: parse arguments, load the config, hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use holdfast::auth::{self, AuthState};
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
    /// Run a custom index: the token service alone, trusted by any number of registries
    /// (`[auth] mode = "token"` with this index's public key in `[token] trusted_keys`).
    Index {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a config file (and the users files and access rules it names) without serving.
    CheckConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Make a local CA and a server certificate it signs (for installs without a PKI).
    Cert {
        #[command(subcommand)]
        action: CertAction,
    },
    /// Manage the users file (`[auth] users_file`, default `<storage.path>/users.toml`).
    User {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: UserAction,
    },
}

#[derive(Subcommand)]
enum CertAction {
    /// Write ca.crt, ca.key, server.crt (chain) and server.key into --dir.
    Init {
        /// Folder for the files (default: the generated-TLS folder of the config,
        /// <storage.path>/tls).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Extra DNS names or IP addresses for the certificate (repeatable), besides
        /// localhost, 127.0.0.1, ::1 and this host's name.
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Add a user; the password is read from the terminal (no echo) or --password-stdin.
    Add {
        name: String,
        #[arg(long = "group")]
        groups: Vec<String>,
        /// May do everything everywhere (subject to `allow_delete`).
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a user's password.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user.
    Remove { name: String },
    /// List users with their groups.
    List,
}

fn main() -> ExitCode {
    holdfast::crypto::install();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config, Role::Registry),
        Command::Index { config } => serve(config, Role::Index),
        Command::CheckConfig { config } => check_config(config),
        Command::User { config, action } => user(config, action),
        Command::Cert { action } => cert(action),
    }
}

fn cert(action: CertAction) -> ExitCode {
    let CertAction::Init {
        dir,
        sans,
        force,
        config,
    } = action;
    let config = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let dir = dir.unwrap_or_else(|| config.generated_tls_dir());
    let files = holdfast::server::certgen::Generated::in_dir(&dir);
    if !force && (files.cert.exists() || files.key.exists() || files.ca_cert.exists()) {
        eprintln!(
            "holdfast: {} already holds TLS files; use --force to replace them",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    let names = holdfast::server::certgen::default_names(&sans);
    match holdfast::server::certgen::generate(&dir, &names) {
        Ok(g) => {
            println!(
                "wrote {} (trust this CA), {} and {} for {}",
                g.ca_cert.display(),
                g.cert.display(),
                g.key.display(),
                names.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("holdfast: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: Option<PathBuf>) -> Result<Config, ExitCode> {
    Config::load_resolved(path.as_deref()).map_err(|e| {
        eprintln!("holdfast: {e}");
        ExitCode::from(2)
    })
}

/// Caps glibc's malloc arenas. By default glibc gives each thread that contends for the heap
/// an arena of its own (up to 8 per core), and uploads hand buffers between the async
/// workers and ~100 blocking-pool threads: memory freed in one arena is not reused by the
/// others, which tripled peak RSS under concurrent uploads.
fn limit_malloc_arenas() {
    // SAFETY: mallopt only adjusts allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        // A fixed mmap threshold: upload buffers (256 KiB) are then always their own
        // mappings, returned to the system when freed, instead of glibc raising the
        // threshold after the first free and keeping them in fragmented arena heaps.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

enum Role {
    Registry,
    Index,
}

fn serve(path: Option<PathBuf>, role: Role) -> ExitCode {
    limit_malloc_arenas();
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
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
    let result = match role {
        Role::Registry => runtime.block_on(holdfast::server::run(config)),
        Role::Index => runtime.block_on(holdfast::server::run_index(config)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "holdfast stopped");
            eprintln!("holdfast: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: Option<PathBuf>) -> ExitCode {
    let mut config = match Config::load(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("holdfast: {e}");
            return ExitCode::from(2);
        }
    };
    config.auth.users_file = Some(config.auth.users_file_or_default(&config.storage.path));
    // Outside systemd, credential names cannot be resolved: say so instead of failing.
    let credentials = std::env::var_os(holdfast::config::CREDENTIALS_DIRECTORY).map(PathBuf::from);
    if credentials.is_none() {
        for (key, value) in [("tls.cert", &config.tls.cert), ("tls.key", &config.tls.key)] {
            if let Some(v) = value.as_ref().filter(|p| p.is_relative()) {
                println!(
                    "note: {key} = {:?} names a systemd credential; it resolves under the service's $CREDENTIALS_DIRECTORY",
                    v.display().to_string()
                );
            }
        }
    } else if let Err(e) = config.resolve_credentials(credentials) {
        eprintln!("holdfast: {e}");
        return ExitCode::from(2);
    }
    if config.auth.mode == auth::AuthMode::Basic {
        if let Err(e) = AuthState::load(&config.auth, &config.access) {
            eprintln!("holdfast: {e}");
            return ExitCode::from(2);
        }
    }
    let what = config
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the embedded default config".into());
    println!("{what}: OK");
    ExitCode::SUCCESS
}

fn user(path: Option<PathBuf>, action: UserAction) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let file = config.auth.users_file_or_default(&config.storage.path);
    // `user add` may run before the first `serve`: make the folder the file goes in.
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        use std::os::unix::fs::DirBuilderExt;
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
        {
            eprintln!("holdfast: cannot create {}: {e}", parent.display());
            return ExitCode::FAILURE;
        }
    }
    let result = match action {
        UserAction::Add {
            name,
            groups,
            admin,
            password_stdin,
        } => auth::read_password(password_stdin, true)
            .and_then(|pw| auth::add_user(&file, &name, &pw, &groups, admin))
            .map(|()| println!("added user {name} to {}", file.display())),
        UserAction::Passwd {
            name,
            password_stdin,
        } => auth::read_password(password_stdin, true)
            .and_then(|pw| auth::set_password(&file, &name, &pw))
            .map(|()| println!("changed the password of {name}")),
        UserAction::Remove { name } => {
            auth::remove_user(&file, &name).map(|()| println!("removed user {name}"))
        }
        UserAction::List => auth::list_users(&file).map(|users| {
            for (name, groups, admin) in users {
                let admin = if admin { " (admin)" } else { "" };
                println!("{name}{admin}\t{}", groups.join(","));
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("holdfast: {e}");
            ExitCode::FAILURE
        }
    }
}
