//! The harness of Tailor's end-to-end tests: the whole system on loopback
//! sockets with free ports, each server in-process (the same
//! `build_server` the binaries use) or as a real child process where a
//! test must kill it.
//!
//! Nothing here is mocked: every call goes through a real socket, real
//! HTTP/2, the shared interceptor stack and real SQLite files in a
//! temporary directory.

#![forbid(unsafe_code)]

pub mod grpc_web;
pub mod postgres;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tailor_auth::{Claims, JwtAuthenticator, JwtKey, mint_hs256};
use tailor_channel::{Caller, DownstreamArgs};
use tailor_interceptors::access_log::CallStats;
use tailor_runtime::{CancellationToken, GrpcServer, ServeOptions};
use tailor_screens::Downstreams;
use tailor_trust::{Authority, IDENTITY_HEADER, IdentitySigner, MeshCredentials, TrustFiles};
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::transport::Channel;

/// The HS256 secret the test BFFs verify with.
pub const SECRET: &[u8] = b"e2e-secret";
/// The origin of the web app the test web BFF admits.
pub const WEB_ORIGIN: &str = "http://shop.test:8080";
/// Products in the test catalogue: small enough to seed in a blink,
/// large enough for several pages everywhere.
pub const PRODUCTS: u32 = 300;

/// Every process of a stack by the name its certificate bears, and
/// `stranger`: a certificate from the same authority that names no BFF.
pub const CERTIFIED: [&str; 8] = [
    "catalog",
    "inventory",
    "reviews",
    "orders",
    "web-bff",
    "mobile-bff",
    "partner-bff",
    "stranger",
];

/// The BFFs downstream services admit.
pub fn bffs() -> Vec<String> {
    ["web-bff", "mobile-bff", "partner-bff"]
        .map(String::from)
        .to_vec()
}

/// The tests' trust directory: one authority and a certificate for each of
/// [`CERTIFIED`], made once and shared by every test process (written
/// beside, then renamed into place, so concurrent tests never read half a
/// directory).
pub fn trust() -> &'static TrustFiles {
    static TRUST: LazyLock<TrustFiles> = LazyLock::new(|| {
        let root = std::env::temp_dir();
        let dir = root.join("tailor-e2e-trust");
        if !dir.join("stranger.key").is_file() {
            let draft = root.join(format!("tailor-e2e-trust-{}", std::process::id()));
            Authority::ensure_dir(&draft, &CERTIFIED).unwrap();
            if std::fs::rename(&draft, &dir).is_err() {
                // Another test process got there first.
                let _ = std::fs::remove_dir_all(&draft);
            }
        }
        TrustFiles::new(dir)
    });
    &TRUST
}

/// The credentials of `name` from [`trust`].
pub fn credentials(name: &str) -> MeshCredentials {
    MeshCredentials::load(trust(), name).unwrap()
}

/// The BFF `name` as its downstream calls present it.
pub fn caller(name: &str) -> Caller {
    Caller::new(credentials(name)).unwrap()
}

/// `message` as the BFF `bff` sends it to `service` for `subject`: with
/// an identity token that BFF signed.
pub fn on_behalf_of<T>(bff: &str, service: &str, subject: &str, message: T) -> tonic::Request<T> {
    let signer = IdentitySigner::new(bff, &std::fs::read(trust().key(bff)).unwrap()).unwrap();
    let identity = tailor_interceptors::context::Identity {
        subject: subject.to_owned(),
        tenant: subject.strip_prefix("partner:").map(str::to_owned),
        scopes: vec![],
        method: tailor_interceptors::context::AuthMethod::Bearer,
        key_id: None,
        plan: None,
    };
    let token = signer.token(service, &identity).unwrap();
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert(IDENTITY_HEADER, token.parse().unwrap());
    request
}

/// One in-process server on a free loopback port.
pub struct Server {
    /// Where it listens.
    pub address: SocketAddr,
    /// Its call counts.
    pub stats: Arc<CallStats>,
    /// For a downstream service: its name, which its certificate bears.
    pub service: Option<&'static str>,
    /// Its plaintext admin port (health, `/metrics`, `/livez`).
    pub admin: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Serves `server` (a BFF) on `127.0.0.1:0`.
    pub async fn start(server: GrpcServer, options: ServeOptions) -> Server {
        Self::serve(server, None, options).await
    }

    /// Serves the downstream service `server` on `127.0.0.1:0` as the
    /// binaries do: over mutual TLS, admitting the three BFFs.
    pub async fn start_service(server: GrpcServer, options: ServeOptions) -> Server {
        let name = server.name();
        let server = server.with_mesh(&credentials(name), bffs()).unwrap();
        Self::serve(server, Some(name), options).await
    }

    async fn serve(
        server: GrpcServer,
        service: Option<&'static str>,
        options: ServeOptions,
    ) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = admin_listener.local_addr().unwrap();
        let stats = server.stats();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.serve_with_admin(
            listener,
            Some(admin_listener),
            shutdown.clone(),
            options,
        ));
        Server {
            address,
            stats,
            service,
            admin,
            shutdown,
            task,
        }
    }

    /// `http://address` (`https://` for a downstream service).
    pub fn url(&self) -> String {
        match self.service {
            Some(_) => format!("https://{}", self.address),
            None => format!("http://{}", self.address),
        }
    }

    /// A connected channel; to a downstream service, over mutual TLS as
    /// the web BFF.
    pub async fn channel(&self) -> Channel {
        match self.service {
            Some(_) => self.channel_as("web-bff").await,
            None => connect(self.address).await,
        }
    }

    /// A channel to a downstream service over mutual TLS with the
    /// certificate of `name` (one of [`CERTIFIED`]).
    pub async fn channel_as(&self, name: &str) -> Channel {
        let service = self.service.expect("a downstream service");
        connect_mesh(self.address, service, name).await
    }

    /// Begins a graceful shutdown, as SIGTERM would.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Shuts down gracefully and waits for the drain to finish.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// A channel to the downstream `service` at `address`, over mutual TLS
/// with the certificate of `name` (one of [`CERTIFIED`]).
pub async fn connect_mesh(address: SocketAddr, service: &str, name: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("https://{address}"))
        .unwrap()
        .tls_config(credentials(name).client_tls(service))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A channel to `address`.
pub async fn connect(address: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// How to build a test stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Time between order status changes.
    pub fulfilment_step: Duration,
    /// Chaos: delay added to every catalog call.
    pub catalog_latency: Option<Duration>,
    /// Chaos: delay added to every inventory and reviews call.
    pub stock_and_reviews_latency: Option<Duration>,
    /// Chaos: every n-th call to catalog and to orders answers UNAVAILABLE.
    pub unavailable_every: Option<u64>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            fulfilment_step: Duration::from_millis(60),
            catalog_latency: None,
            stock_and_reviews_latency: None,
            unavailable_every: None,
        }
    }
}

/// The four downstream services and the three BFFs.
pub struct Stack {
    /// Catalog.
    pub catalog: Server,
    /// Inventory.
    pub inventory: Server,
    /// Reviews.
    pub reviews: Server,
    /// Orders.
    pub orders: Server,
    /// Web BFF.
    pub web: Server,
    /// Mobile BFF.
    pub mobile: Server,
    /// Partner BFF.
    pub partner: Server,
    /// The partner BFF's key store.
    pub keys: tailor_partner_bff::KeyStore,
    /// The web BFF's users and sessions (empty; tests add users).
    pub accounts: tailor_web_bff::Accounts,
    /// A key of tenant `acme` with every scope.
    pub partner_key: String,
    /// Holds the SQLite files.
    pub dir: tempfile::TempDir,
}

fn options(latency: Option<Duration>) -> ServeOptions {
    ServeOptions {
        drain_timeout: Duration::from_secs(5),
        injected_latency: latency,
        ..ServeOptions::default()
    }
}

fn flaky(every: Option<u64>) -> ServeOptions {
    ServeOptions {
        inject_unavailable_every: every,
        ..options(None)
    }
}

/// Downstream addresses as the BFFs take them.
pub fn downstream_args(
    catalog: &str,
    inventory: &str,
    reviews: &str,
    orders: &str,
) -> DownstreamArgs {
    DownstreamArgs {
        catalog_addr: catalog.to_owned(),
        inventory_addr: inventory.to_owned(),
        reviews_addr: reviews.to_owned(),
        orders_addr: orders.to_owned(),
        policy: Default::default(),
    }
}

/// A JWT verifier like the BFF binaries build.
pub fn verifier(audience: &str) -> JwtAuthenticator {
    JwtAuthenticator::new(&JwtKey::Hs256(SECRET.to_vec()), audience, None).unwrap()
}

/// How the test web BFF meets browsers: [`WEB_ORIGIN`] allowed, Secure
/// cookies, 64 KiB request messages.
pub fn web_options() -> tailor_web_bff::WebOptions {
    use tailor_browser::{AllowedOrigins, BrowserAccess};
    tailor_web_bff::WebOptions {
        browser: BrowserAccess {
            origins: AllowedOrigins::new([WEB_ORIGIN]).unwrap(),
            max_request_bytes: 64 * 1024,
        },
        cookie: tailor_auth::CookiePolicy {
            secure: true,
            max_age_secs: 3600,
        },
        sign_in_attempts: tailor_web_bff::DEFAULT_SIGN_IN_ATTEMPTS,
        orders_per_user: tailor_screens::order::DEFAULT_ORDER_RATE,
    }
}

/// The three BFFs over the given downstream addresses.
pub async fn start_bffs(
    args: &DownstreamArgs,
    keys: tailor_partner_bff::KeyStore,
    accounts: tailor_web_bff::Accounts,
) -> (Server, Server, Server) {
    let web = tailor_web_bff::build_server(
        Downstreams::connect(args, &caller(tailor_web_bff::NAME)).unwrap(),
        verifier(tailor_web_bff::DEFAULT_AUDIENCE),
        accounts,
        web_options(),
    );
    let mobile = tailor_mobile_bff::build_server(
        Downstreams::connect(args, &caller(tailor_mobile_bff::NAME)).unwrap(),
        verifier(tailor_mobile_bff::DEFAULT_AUDIENCE),
        tailor_screens::order::DEFAULT_ORDER_RATE,
    );
    let partner = tailor_partner_bff::build_server(
        Downstreams::connect(args, &caller(tailor_partner_bff::NAME)).unwrap(),
        keys,
        tailor_partner_bff::plans::limits(),
    )
    .await
    .unwrap();
    (
        Server::start(web, options(None)).await,
        Server::start(mobile, options(None)).await,
        Server::start(partner, options(None)).await,
    )
}

/// Every scope a partner key can have.
pub fn all_scopes() -> Vec<String> {
    tailor_partner_bff::scopes::ALL
        .iter()
        .map(|s| s.to_string())
        .collect()
}

impl Stack {
    /// Starts everything with default options.
    pub async fn start() -> Stack {
        Self::start_with(StackOptions::default()).await
    }

    /// Starts everything.
    pub async fn start_with(options_: StackOptions) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let db = |name: &str| dir.path().join(format!("{name}.db"));
        let catalog = tailor_catalog::build_server(&tailor_catalog::CatalogConfig {
            database: db("catalog").into(),
            products: PRODUCTS,
        })
        .await
        .unwrap();
        let inventory = tailor_inventory::build_server(&tailor_inventory::InventoryConfig {
            database: db("inventory").into(),
            products: PRODUCTS,
        })
        .await
        .unwrap();
        let reviews = tailor_reviews::build_server(&tailor_reviews::ReviewsConfig {
            database: db("reviews").into(),
            products: PRODUCTS,
        })
        .await
        .unwrap();
        let orders_shutdown = CancellationToken::new();
        let orders = tailor_orders::build_server(
            &tailor_orders::OrdersConfig {
                database: db("orders").into(),
                fulfilment_step: options_.fulfilment_step,
            },
            orders_shutdown,
        )
        .await
        .unwrap();
        // A flaky catalog keeps its latency: its failures then take as
        // long as its answers.
        let catalog_options = ServeOptions {
            inject_unavailable_every: options_.unavailable_every,
            ..options(options_.catalog_latency)
        };
        let catalog = Server::start_service(catalog, catalog_options).await;
        let slow = options_.stock_and_reviews_latency;
        let inventory = Server::start_service(inventory, options(slow)).await;
        let reviews = Server::start_service(reviews, options(slow)).await;
        let orders = Server::start_service(orders, flaky(options_.unavailable_every)).await;

        let keys = tailor_partner_bff::KeyStore::open(&db("partner")).unwrap();
        let (key, _) = keys
            .create("acme", "e2e", &all_scopes(), "standard")
            .await
            .unwrap();
        let args = downstream_args(
            &catalog.url(),
            &inventory.url(),
            &reviews.url(),
            &orders.url(),
        );
        let accounts =
            tailor_web_bff::Accounts::open(&db("web"), Duration::from_secs(3600)).unwrap();
        let (web, mobile, partner) = start_bffs(&args, keys.clone(), accounts.clone()).await;
        Stack {
            catalog,
            inventory,
            reviews,
            orders,
            web,
            mobile,
            partner,
            keys,
            accounts,
            partner_key: key.token,
            dir,
        }
    }

    /// The downstream services' URLs: catalog, inventory, reviews, orders.
    pub fn downstream_urls(&self) -> [String; 4] {
        [
            self.catalog.url(),
            self.inventory.url(),
            self.reviews.url(),
            self.orders.url(),
        ]
    }

    /// Every server with its name.
    pub fn servers(&self) -> [(&'static str, &Server); 7] {
        [
            ("catalog", &self.catalog),
            ("inventory", &self.inventory),
            ("reviews", &self.reviews),
            ("orders", &self.orders),
            ("web-bff", &self.web),
            ("mobile-bff", &self.mobile),
            ("partner-bff", &self.partner),
        ]
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims for `subject` and `audience`, valid for an hour.
pub fn claims(subject: &str, audience: &str) -> Claims {
    Claims {
        sub: subject.to_owned(),
        aud: audience.to_owned(),
        exp: now() + 3600,
        iat: now(),
        iss: String::new(),
        scope: String::new(),
    }
}

/// A valid web token for `subject`.
pub fn web_token(subject: &str) -> String {
    mint_hs256(SECRET, &claims(subject, tailor_web_bff::DEFAULT_AUDIENCE))
}

/// A valid mobile token for `subject`.
pub fn mobile_token(subject: &str) -> String {
    mint_hs256(
        SECRET,
        &claims(subject, tailor_mobile_bff::DEFAULT_AUDIENCE),
    )
}

/// `request` with `authorization: Bearer token`.
pub fn bearer<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// `request` with `x-api-key`.
pub fn api_key<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().unwrap());
    request
}

/// The directory cargo put the workspace's binaries in (next to the test
/// executable's `deps/`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// A command running one of the workspace's binaries, killed when dropped,
/// with no `TAILOR_*` variable of the test's own environment: only what a
/// test sets reaches it.
pub fn command(binary: &str) -> tokio::process::Command {
    let path = bin_dir().join(binary);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (cargo build)",
        path.display()
    );
    let mut command = tokio::process::Command::new(path);
    for (name, _) in std::env::vars() {
        if name.starts_with("TAILOR_") {
            command.env_remove(name);
        }
    }
    command.kill_on_drop(true);
    command
}

/// Creates an API key for `tenant` on `plan` in the partner store under
/// `data_dir` with the `keys create` command, as an operator would, and
/// returns it.
pub async fn create_key_with_cli(data_dir: &str, tenant: &str, plan: &str) -> String {
    let output = command("tailor-partner-bff")
        .args(["--data-dir", data_dir, "keys", "create", "--tenant", tenant])
        .args(["--plan", plan])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A server binary running as its own process.
pub struct Process {
    /// Where it listens.
    pub address: SocketAddr,
    /// Where its admin port listens, as it announced it, when it was
    /// started with `--admin-listen` (`127.0.0.1:0` for a free port).
    pub admin: Option<SocketAddr>,
    /// The child.
    pub child: tokio::process::Child,
}

impl Process {
    /// Starts `binary` with `args` on a free port and waits for its
    /// "listening on" line.
    pub async fn start(binary: &str, args: &[&str]) -> Process {
        Self::start_with(binary, args, &[], None).await
    }

    /// Starts `binary` as a user would: `args` on the command line, `env`
    /// in its environment, its log (stderr) written to `log` when given.
    pub async fn start_with(
        binary: &str,
        args: &[&str],
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Process {
        Self::start_listening(binary, "127.0.0.1:0", args, env, log).await
    }

    /// [`Process::start_with`] on the address `listen` (`127.0.0.1:0` for
    /// a free port; a process's old address to start it again there).
    pub async fn start_listening(
        binary: &str,
        listen: &str,
        args: &[&str],
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Process {
        let stderr = match log {
            Some(log) => Stdio::from(std::fs::File::create(log).unwrap()),
            None => Stdio::null(),
        };
        let mut command = command(binary);
        command.arg("--listen").arg(listen);
        if !args.contains(&"--trust-dir") {
            command.arg("--trust-dir").arg(&trust().dir);
        }
        let mut child = command
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let has_admin = args.contains(&"--admin-listen");
        let (address, admin) = tokio::time::timeout(Duration::from_secs(60), async {
            let mut address = None;
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some((_, at)) = line.split_once(" listening on ") {
                    address = Some(at.trim().parse().unwrap());
                } else if let Some((_, at)) = line.split_once(" admin (plaintext health) on ") {
                    return (address.unwrap(), Some(at.trim().parse().unwrap()));
                }
                if let (Some(address), false) = (address, has_admin) {
                    return (address, None);
                }
            }
            let said = log.map(std::fs::read_to_string).and_then(Result::ok);
            panic!(
                "{binary} exited before listening: {}",
                said.unwrap_or_default()
            );
        })
        .await
        .expect("server did not start in time");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Process {
            address,
            admin,
            child,
        }
    }

    /// Starts the BFF `binary` over the downstream services at `downstreams`
    /// (catalog, inventory, reviews, orders), keeping its files in `data`,
    /// with `extra` flags, `env` and `log` as [`Process::start_with`] takes
    /// them. The web and mobile BFFs verify tokens with [`SECRET`] unless
    /// `extra` names another key (an RS256 key takes precedence).
    pub async fn start_bff(
        binary: &str,
        data: &str,
        downstreams: &[String; 4],
        extra: &[&str],
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Process {
        let [catalog, inventory, reviews, orders] = downstreams;
        let secret = std::str::from_utf8(SECRET).unwrap();
        let verifies_tokens = binary == "tailor-web-bff" || binary == "tailor-mobile-bff";
        let mut args = vec![
            "--data-dir",
            data,
            "--catalog-addr",
            catalog,
            "--inventory-addr",
            inventory,
            "--reviews-addr",
            reviews,
            "--orders-addr",
            orders,
        ];
        if verifies_tokens && !extra.contains(&"--jwt-hs256-secret") {
            args.extend(["--jwt-hs256-secret", secret]);
        }
        args.extend_from_slice(extra);
        Self::start_with(binary, &args, env, log).await
    }

    /// Sends SIGINT, as Ctrl-C in a terminal does.
    pub fn interrupt(&self) {
        self.signal(nix::sys::signal::Signal::SIGINT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id().unwrap() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// Waits up to `limit` for the process to exit and returns its status.
    pub async fn exited(&mut self, limit: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("the process exited in time")
            .unwrap()
    }

    /// `http://address`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Sends SIGKILL: the process dies without draining, like a crash.
    pub async fn crash(&mut self) {
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
    }

    /// Sends SIGTERM, as a supervisor stopping it does.
    pub fn terminate(&self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }
}

/// What `tailor up` printed once its stack was up.
#[derive(Debug, Default)]
pub struct UpTable {
    /// Every server of the table with its address.
    pub servers: Vec<(String, SocketAddr)>,
    /// Every server's plaintext health port.
    pub health: Vec<(String, SocketAddr)>,
    /// The development partner key of the ready-to-paste lines.
    pub partner_key: String,
    /// Everything printed up to the end of the table.
    pub printed: String,
}

impl UpTable {
    /// Reads the launcher's stdout up to the end of its table (the `Logs:`
    /// line); `None` when the output ends first.
    pub async fn read<R: tokio::io::AsyncBufRead + Unpin>(
        lines: &mut tokio::io::Lines<R>,
    ) -> Option<UpTable> {
        let mut table = UpTable::default();
        while let Ok(Some(line)) = lines.next_line().await {
            table.printed.push_str(&line);
            table.printed.push('\n');
            let words: Vec<&str> = line.split_whitespace().collect();
            // server, address, plaintext health address, role
            if let [name, address, health, ..] = words.as_slice()
                && let (Ok(address), Ok(health)) = (address.parse(), health.parse())
            {
                table.servers.push((name.to_string(), address));
                table.health.push((name.to_string(), health));
            }
            if let Some(rest) = line.split("x-api-key: ").nth(1) {
                table.partner_key = rest.split('\'').next().unwrap_or_default().to_owned();
            }
            if line.starts_with("Logs:") {
                return Some(table);
            }
        }
        None
    }

    /// The address of the server named `name`.
    pub fn at(&self, name: &str) -> SocketAddr {
        self.servers
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} is not in the table:\n{}", self.printed))
            .1
    }
}
