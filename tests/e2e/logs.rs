//! JSON log lines name the call they belong to: with `--log-format json`,
//! every access line of a call, on the BFF and on each downstream service
//! it called, carries the call's trace id, its own span id and the request
//! id, so one user's report (a trace id from the browser's error area, or a
//! request id) finds every line of the call in every process. No collector
//! is needed for this: the ids are there with exporting off.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tailor_e2e::{PRODUCTS, Process};
use tailor_proto::web;
use tailor_proto::web::v1::shop_service_client::ShopServiceClient;

/// The JSON lines of `log` whose target is `access`; every line of the
/// file must be JSON.
fn access_lines(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
        })
        .filter(|line| line["target"] == "access")
        .collect()
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text.bytes().all(|b| b.is_ascii_hexdigit())
        && text.bytes().any(|b| b != b'0')
}

#[tokio::test]
async fn json_access_lines_of_a_call_carry_its_trace_id_span_id_and_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let products = PRODUCTS.to_string();
    let seeded = ["--data-dir", &data, "--products", &products];
    let json = [("TAILOR_LOG_FORMAT", "json")];
    let log = |name: &str| dir.path().join(format!("{name}.log"));
    let mut logs: HashMap<&str, PathBuf> = HashMap::new();
    let mut processes = Vec::new();
    for (name, args) in [
        ("catalog", &seeded[..]),
        ("inventory", &seeded[..]),
        ("reviews", &seeded[..]),
        ("orders", &["--data-dir", &data][..]),
    ] {
        let path = log(name);
        let process =
            Process::start_with(&format!("tailor-{name}"), args, &json, Some(&path)).await;
        logs.insert(name, path);
        processes.push(process);
    }
    let urls: [String; 4] = std::array::from_fn(|i| processes[i].url());
    let web_log = log("web-bff");
    let web = Process::start_bff("tailor-web-bff", &data, &urls, &[], &json, Some(&web_log)).await;
    let mut client = ShopServiceClient::new(tailor_e2e::connect(web.address).await);

    // One call that arrives with a trace context, one that does not.
    let trace_id = "5b8efff798038103d269b633813fc60c";
    let mut request = tonic::Request::new(web::v1::GetProductPageRequest {
        product_id: "prod-000042".into(),
    });
    let metadata = request.metadata_mut();
    metadata.insert("x-request-id", "logged-page-1".parse().unwrap());
    metadata.insert(
        "traceparent",
        format!("00-{trace_id}-eee19b7ec3c1b174-01")
            .parse()
            .unwrap(),
    );
    client.get_product_page(request).await.unwrap();
    let mut request = tonic::Request::new(web::v1::GetProductPageRequest {
        product_id: "prod-000007".into(),
    });
    request
        .metadata_mut()
        .insert("x-request-id", "logged-page-2".parse().unwrap());
    client.get_product_page(request).await.unwrap();

    // Five downstream calls per page: two to the catalogue, one to
    // inventory, two to reviews.
    let expected = [("catalog", 2), ("inventory", 1), ("reviews", 2)];
    let of = |lines: &[Value], id: &str| -> Vec<Value> {
        lines
            .iter()
            .filter(|line| line["request_id"] == id)
            .cloned()
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let written = of(&access_lines(&web_log), "logged-page-2").len() == 1
            && expected
                .iter()
                .all(|(name, n)| of(&access_lines(&logs[name]), "logged-page-2").len() == *n);
        if written {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the access lines were never written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    for (id, given) in [("logged-page-1", Some(trace_id)), ("logged-page-2", None)] {
        let bff = of(&access_lines(&web_log), id);
        assert_eq!(bff.len(), 1, "{bff:?}");
        let call = &bff[0]["span"];
        assert_eq!(call["request_id"], id, "{}", bff[0]);
        let trace = call["trace_id"].as_str().unwrap_or_default().to_owned();
        assert!(is_hex(&trace, 32), "a trace id: {}", bff[0]);
        if let Some(given) = given {
            assert_eq!(trace, given, "the caller's trace goes on");
        }
        let bff_span = call["span_id"].as_str().unwrap_or_default().to_owned();
        assert!(is_hex(&bff_span, 16), "a span id: {}", bff[0]);
        assert_ne!(bff_span, "eee19b7ec3c1b174", "the BFF's own span");
        for (name, n) in expected {
            let lines = of(&access_lines(&logs[name]), id);
            assert_eq!(lines.len(), n, "{name}: {lines:?}");
            for line in lines {
                let call = &line["span"];
                assert_eq!(call["trace_id"], trace.as_str(), "{name}: {line}");
                assert_eq!(call["request_id"], id, "{name}: {line}");
                let span = call["span_id"].as_str().unwrap_or_default();
                assert!(is_hex(span, 16) && span != bff_span, "{name}: {line}");
            }
        }
    }
    drop(web);
}
