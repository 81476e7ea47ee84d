//! Where a store lives: chosen once, at start-up.

use std::path::PathBuf;
use std::str::FromStr;

/// Where a server keeps its store.
#[derive(Debug, Clone)]
pub enum Database {
    /// An embedded SQLite file (the default: nothing to install or run).
    Sqlite(PathBuf),
    /// A PostgreSQL database; the store keeps its tables in a schema named
    /// after the service, so several services and several replicas of one
    /// service can share it.
    Postgres(PostgresUrl),
}

impl From<PathBuf> for Database {
    fn from(path: PathBuf) -> Self {
        Database::Sqlite(path)
    }
}

/// A PostgreSQL connection URL or key-value string, parsed and checked when
/// the flag is read. It is shown (in errors, in `Debug`) without its
/// password.
#[derive(Clone)]
pub struct PostgresUrl {
    pub(crate) config: std::sync::Arc<tokio_postgres::Config>,
}

impl FromStr for PostgresUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
            return Err("expected postgres://user@host:port/database".to_owned());
        }
        let config: tokio_postgres::Config = text.parse().map_err(|e| format!("{e}"))?;
        if config.get_hosts().is_empty() {
            return Err("the URL names no host".to_owned());
        }
        Ok(Self {
            config: std::sync::Arc::new(config),
        })
    }
}

impl PostgresUrl {
    /// The parsed connection settings.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

impl std::fmt::Display for PostgresUrl {
    /// `user@host:port/database`, never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use tokio_postgres::config::Host;
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(index, host)| {
                let port = self
                    .config
                    .get_ports()
                    .get(index)
                    .or(self.config.get_ports().first())
                    .copied()
                    .unwrap_or(5432);
                match host {
                    Host::Tcp(name) => format!("{name}:{port}"),
                    Host::Unix(path) => format!("{}:{port}", path.display()),
                }
            })
            .collect();
        write!(
            f,
            "{}@{}/{}",
            self.config.get_user().unwrap_or(""),
            hosts.join(","),
            self.config.get_dbname().unwrap_or("")
        )
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

/// The flag every server with a store takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DatabaseArgs {
    /// Keep this server's store in PostgreSQL instead of a SQLite file in
    /// --data-dir: `postgres://user[:password]@host:port/database`. Each
    /// service keeps its tables in a schema named after it, so replicas of
    /// a service share their data (and the BFFs their limits and sessions).
    /// The connection is plain TCP or a unix socket, without TLS: keep the
    /// database on a private network or the same host.
    #[arg(
        long = "database-url",
        env = "TAILOR_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<PostgresUrl>,
}

impl DatabaseArgs {
    /// PostgreSQL when a URL is configured, else the SQLite file
    /// `sqlite_file`.
    pub fn database(&self, sqlite_file: PathBuf) -> Database {
        match &self.database_url {
            Some(url) => Database::Postgres(url.clone()),
            None => Database::Sqlite(sqlite_file),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_when_read_and_shown_without_their_password() {
        let url: PostgresUrl = "postgres://tailor:s3cret@127.0.0.1:5433/shop"
            .parse()
            .unwrap();
        assert_eq!(url.to_string(), "tailor@127.0.0.1:5433/shop");
        assert!(!format!("{url:?}").contains("s3cret"));
        let error = "mysql://x@y/z".parse::<PostgresUrl>().unwrap_err();
        assert!(error.contains("postgres://"), "{error}");
        assert!("postgres://u@h:notaport/d".parse::<PostgresUrl>().is_err());
    }
}
