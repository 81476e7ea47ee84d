use std::path::PathBuf;
use std::process::Command;

use tailor_e2e::Stack;

/// `buf` from the npm package `@bufbuild/buf`, installed by the test
/// command (`npm ci --prefix tests`).
fn buf() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node_modules/.bin/buf");
    assert!(
        path.exists(),
        "{} is missing: run `npm ci --prefix tests` (the README's test command does)",
        path.display()
    );
    path
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn proto_passes_buf_lint_standard() {
    let output = Command::new(buf())
        .arg("lint")
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "buf lint:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Calls a BFF with `buf curl`, which learns the schema through reflection
/// alone, and returns the JSON answer.
async fn buf_curl(url: String, body: &str, headers: &[String]) -> serde_json::Value {
    let mut command = tokio::process::Command::new(buf());
    command.args([
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "-d",
        body,
    ]);
    for header in headers {
        command.args(["-H", header]);
    }
    let output = command.arg(&url).output().await.unwrap();
    assert!(
        output.status.success(),
        "buf curl {url}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn buf_curl_gets_real_shop_data_from_every_bff_through_reflection() {
    let stack = Stack::start().await;
    let web = buf_curl(
        format!("{}/tailor.web.v1.ShopService/ListProducts", stack.web.url()),
        r#"{"page_size": 2}"#,
        &[],
    )
    .await;
    assert_eq!(web["products"].as_array().unwrap().len(), 2);
    assert!(
        web["products"][0]["price"]["display"]
            .as_str()
            .unwrap()
            .starts_with('€')
    );

    let mobile = buf_curl(
        format!(
            "{}/tailor.mobile.v1.ShopService/GetProductPage",
            stack.mobile.url()
        ),
        r#"{"product_id": "prod-000042", "screen": {"width_points": 390, "density": 3}}"#,
        &[],
    )
    .await;
    assert_eq!(mobile["id"], "prod-000042");
    assert!(mobile["shortDescription"].as_str().unwrap().len() > 20);

    let partner = buf_curl(
        format!(
            "{}/tailor.partner.v1.PartnerService/BatchGetAvailability",
            stack.partner.url()
        ),
        r#"{"product_ids": ["prod-000001"]}"#,
        &[format!("x-api-key: {}", stack.partner_key)],
    )
    .await;
    assert_eq!(partner["availabilities"][0]["productId"], "prod-000001");
    assert_eq!(partner["availabilities"][0]["known"], true);
}

/// `buf curl` speaking grpc-web over HTTP/1.1, as a third-party client:
/// the schema comes from the repository's module, because reflection is a
/// bidirectional stream and grpc-web has no client streaming.
#[tokio::test]
async fn buf_curl_calls_the_web_bff_over_grpc_web() {
    let stack = Stack::start().await;
    let call = |method: &str, body: &str| {
        let mut command = tokio::process::Command::new(buf());
        command
            .args(["curl", "--protocol", "grpcweb", "--schema"])
            .arg(workspace())
            .args(["-d", body])
            .arg(format!(
                "{}/tailor.web.v1.ShopService/{method}",
                stack.web.url()
            ));
        command.output()
    };
    let output = call("ListProducts", r#"{"page_size": 2, "query": "mug"}"#)
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let page: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(page["products"].as_array().unwrap().len(), 2);

    let output = call("GetProductPage", r#"{"product_id": "prod-999999"}"#)
        .await
        .unwrap();
    assert!(!output.status.success());
    let error: serde_json::Value = serde_json::from_slice(&output.stderr).unwrap();
    assert_eq!(error["code"], "not_found");
    assert_eq!(error["message"], "product prod-999999 not found");
}

/// The partner contract is frozen: `buf breaking` (FILE rules) compares
/// `tailor.partner.v1` with the image committed in
/// `tests/contracts/partner-v1.binpb`.
fn partner_breaking(module_root: &std::path::Path) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    // buf reads the format from the extension.
    let image = dir.path().join("partner.binpb");
    let build = Command::new(buf())
        .args(["build", "--path", "proto/tailor/partner/v1", "-o"])
        .arg(&image)
        .current_dir(module_root)
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "buf build: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    Command::new(buf())
        .arg("breaking")
        .arg(&image)
        .arg("--against")
        .arg(workspace().join("tests/contracts/partner-v1.binpb"))
        .args([
            "--config",
            r#"{"version":"v2","breaking":{"use":["FILE"]}}"#,
        ])
        .output()
        .unwrap()
}

#[test]
fn partner_v1_has_no_breaking_change_against_its_baseline() {
    let output = partner_breaking(&workspace());
    assert!(
        output.status.success(),
        "tailor.partner.v1 changed incompatibly:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn an_incompatible_change_to_partner_v1_fails_the_check() {
    // A copy of the module with one field's type changed, as a careless
    // edit would.
    let copy = tempfile::tempdir().unwrap();
    let source = workspace();
    std::fs::copy(source.join("buf.yaml"), copy.path().join("buf.yaml")).unwrap();
    let mut stack = vec![std::path::PathBuf::from("proto")];
    while let Some(dir) = stack.pop() {
        std::fs::create_dir_all(copy.path().join(&dir)).unwrap();
        for entry in std::fs::read_dir(source.join(&dir)).unwrap() {
            let entry = entry.unwrap();
            let relative = dir.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                stack.push(relative);
            } else {
                std::fs::copy(entry.path(), copy.path().join(&relative)).unwrap();
            }
        }
    }
    let partner = copy.path().join("proto/tailor/partner/v1/partner.proto");
    let text = std::fs::read_to_string(&partner).unwrap();
    assert!(text.contains("  string cursor = 2;"));
    std::fs::write(
        &partner,
        text.replace("  string cursor = 2;", "  int64 cursor = 2;"),
    )
    .unwrap();

    let output = partner_breaking(copy.path());
    assert!(!output.status.success(), "the change went unnoticed");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        report.contains("\"cursor\"") && report.contains("changed type"),
        "{report}"
    );
}
