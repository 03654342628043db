//! `chat-server [serve|migrate]`: serve (default) or apply migrations.

use chat_server::settings::LogFormat;
use chat_server::{Settings, StartError, drain, open_database, start, termination};
use std::process::ExitCode;

#[actix_web::main]
async fn main() -> ExitCode {
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_tracing(settings.server.log_format);
    let command = std::env::args().nth(1).unwrap_or_else(|| "serve".into());
    let result = match command.as_str() {
        "serve" => serve(settings).await,
        "migrate" => migrate(settings).await,
        "-h" | "--help" | "help" => {
            println!(
                "usage: chat-server [serve|migrate]\n  serve    run the server (default)\n  migrate  apply pending migrations and exit"
            );
            Ok(())
        }
        other => Err(StartError::UnknownCommand(other.to_owned())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> Result<(), StartError> {
    if settings.uses_dev_secret() {
        tracing::warn!(
            "JWT_SECRET is not set: using an insecure development key. Tokens can be forged; never expose this server."
        );
    }
    // Logged with the password masked, so operators see which servers are used.
    let database_url = chat_persistence::db::redact(settings.database_url().expose());
    let redis = settings
        .redis_url()
        .map(|u| chat_persistence::db::redact(u.expose()))
        .or_else(|| {
            let nodes = settings.redis_cluster_nodes();
            (!nodes.is_empty()).then(|| format!("cluster {}", nodes.join(",")))
        });
    let running = start(settings).await?;
    tracing::info!(addr = %running.addr, database = %database_url, redis = ?redis, "chat server listening");
    let (handle, shutdown) = (running.handle.clone(), running.shutdown.clone());
    actix_web::rt::spawn(async move {
        termination().await;
        tracing::info!("shutting down: closing sockets, answering what was taken");
        drain(&handle, &shutdown).await;
    });
    running.server.await.map_err(StartError::Serve)
}

async fn migrate(settings: Settings) -> Result<(), StartError> {
    let db = open_database(&settings)?;
    let applied = db.migrate().await?;
    tracing::info!(applied, "migrations applied");
    Ok(())
}

fn init_tracing(format: LogFormat) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = chat_server::log_filter(rust_log.as_deref());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}
