//! The README's run command, as a newcomer runs it: read from README.md
//! (not a copy of it), run in a fresh clone of this repository so nothing
//! built earlier can hide a missing step, brought up until every server is
//! SERVING, called, and stopped the two ways people stop it: Ctrl-C in a
//! terminal (SIGINT to the whole process group) and SIGTERM to the
//! launcher alone.
//!
//! It builds the whole workspace cold in release mode, which takes minutes,
//! so it is ignored in the normal run; `tests/run.sh` runs it on its own.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tailor_e2e::{UpTable, api_key, connect};
use tailor_proto::mobile::v1::shop_service_client::ShopServiceClient as MobileClient;
use tailor_proto::partner::v1::BatchGetAvailabilityRequest;
use tailor_proto::partner::v1::partner_service_client::PartnerServiceClient;
use tailor_proto::web::v1::ListProductsRequest;
use tailor_proto::web::v1::shop_service_client::ShopServiceClient as WebClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long the cold build and start may take before the test gives up.
const COLD_START_LIMIT: Duration = Duration::from_secs(45 * 60);
/// How long stopping may take, as the README promises.
const STOP_LIMIT: Duration = Duration::from_secs(20);

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The one command in the fenced block after "Run the whole stack".
fn run_command(readme: &str) -> String {
    let section = readme
        .split("**Run the whole stack**")
        .nth(1)
        .expect("README.md has a 'Run the whole stack' paragraph");
    let block = section
        .split("```")
        .nth(1)
        .expect("a fenced command follows it");
    let lines: Vec<&str> = block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "the run command is one line: {lines:?}");
    lines[0].to_owned()
}

/// Processes whose executable lives under `dir`.
fn processes_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(exe) = std::fs::read_link(entry.path().join("exe"))
            && exe.starts_with(dir)
        {
            found.push(format!(
                "{} ({})",
                entry.file_name().to_string_lossy(),
                exe.display()
            ));
        }
    }
    found
}

/// Waits until `child` exits and nothing runs from `dir` any more; returns
/// how long that took.
async fn stopped(child: &mut Child, dir: &Path, what: &str) -> Duration {
    let began = Instant::now();
    let status = tokio::time::timeout(STOP_LIMIT, child.wait())
        .await
        .unwrap_or_else(|_| panic!("{what}: still running {STOP_LIMIT:?} after the signal"))
        .unwrap();
    assert!(status.success(), "{what}: exit status {status:?}");
    while !processes_under(dir).is_empty() {
        assert!(
            began.elapsed() < STOP_LIMIT,
            "{what}: still running: {:?}",
            processes_under(dir)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    began.elapsed()
}

/// One real call to each BFF of the launched stack.
async fn call_each_bff(table: &UpTable) {
    let web = WebClient::new(connect(table.at("web-bff")).await)
        .list_products(ListProductsRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(web.products.len(), 2);
    let mobile = MobileClient::new(connect(table.at("mobile-bff")).await)
        .list_products(tailor_proto::mobile::v1::ListProductsRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mobile.products.len(), 2);
    let partner = PartnerServiceClient::new(connect(table.at("partner-bff")).await)
        .batch_get_availability(api_key(
            &table.partner_key,
            BatchGetAvailabilityRequest {
                product_ids: vec!["prod-000001".into()],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(partner.availabilities[0].known);
}

/// Starts `command` in `clone` as its own process group, stderr to `log`.
fn launch(mut command: Command, clone: &Path, log: &Path) -> Child {
    command
        .current_dir(clone)
        // Free ports, so the test never collides with a stack already up.
        .env("TAILOR_ANY_PORTS", "1")
        // The clone builds into its own target/, as on a fresh machine.
        .env_remove("CARGO_TARGET_DIR")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn table_of(child: &mut Child, limit: Duration, log: &Path) -> UpTable {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let table = tokio::time::timeout(limit, UpTable::read(&mut lines))
        .await
        .unwrap_or_else(|_| panic!("not up within {limit:?}; see {}", log.display()))
        .unwrap_or_else(|| panic!("the command ended before the stack was up:\n{}", tail(log)));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    assert!(
        table.printed.contains("all 7 servers SERVING"),
        "{}",
        table.printed
    );
    table
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn assert_no_crash_reported(log: &Path, what: &str) {
    let text = std::fs::read_to_string(log).unwrap();
    assert!(
        !text.lines().any(|l| l.contains(" exited (")),
        "{what}: a line claims a server crashed:\n{}",
        tail(log)
    );
}

#[tokio::test]
#[ignore = "clones the repository and builds it cold in release mode (minutes); tests/run.sh runs it on its own"]
async fn the_readme_run_command_works_on_a_fresh_clone_and_stops_on_ctrl_c_and_sigterm() {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    let command = run_command(&readme);
    let work = tempfile::tempdir().unwrap();
    let clone = work.path().join("tailor");
    let cloned = std::process::Command::new("git")
        .args(["clone", "--quiet"])
        .arg(repository())
        .arg(&clone)
        .status()
        .unwrap();
    assert!(cloned.success(), "git clone failed");
    let clone = clone.canonicalize().unwrap();

    // Ctrl-C in a terminal: SIGINT to the whole foreground process group.
    let log = work.path().join("run.log");
    let began = Instant::now();
    let mut shell = Command::new("bash");
    shell.arg("-c").arg(&command);
    let mut run = launch(shell, &clone, &log);
    let table = table_of(&mut run, COLD_START_LIMIT, &log).await;
    let cold_start = began.elapsed();
    call_each_bff(&table).await;
    let group = Pid::from_raw(-(run.id().unwrap() as i32));
    kill(group, Signal::SIGINT).unwrap();
    let ctrl_c = stopped(&mut run, &clone, "Ctrl-C").await;
    assert_no_crash_reported(&log, "Ctrl-C");

    // SIGTERM to the launcher alone, as a supervisor stops it.
    let log = work.path().join("sigterm.log");
    let mut launcher = Command::new(clone.join("target/release/tailor"));
    launcher.arg("up");
    let mut up = launch(launcher, &clone, &log);
    let table = table_of(&mut up, Duration::from_secs(120), &log).await;
    call_each_bff(&table).await;
    kill(Pid::from_raw(up.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let sigterm = stopped(&mut up, &clone, "SIGTERM").await;
    assert_no_crash_reported(&log, "SIGTERM");

    println!("README run command: {command}");
    println!(
        "fresh clone to all servers SERVING: {:.0} s; stopped after Ctrl-C in {:.2} s, after SIGTERM in {:.2} s",
        cold_start.as_secs_f64(),
        ctrl_c.as_secs_f64(),
        sigterm.as_secs_f64()
    );
}

#[test]
fn the_run_command_is_found_in_the_readme() {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    let command = run_command(&readme);
    assert!(command.contains("tailor up"), "{command}");
}
