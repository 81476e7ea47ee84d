//! The dependency rules ARCHITECTURE.md states, checked against the real
//! graph from `cargo metadata`: a forbidden arrow fails the suite instead of
//! waiting for a reviewer to notice.

use std::collections::BTreeMap;
use std::path::Path;

/// Where a crate stands, from its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    /// `crates/platform/*`: shared by every server, knows no client type.
    Platform,
    /// `crates/services/*`: the downstream services and their seed data.
    Service,
    /// `crates/bff/screens`: what the BFFs share about screens.
    Screens,
    /// `crates/bff/*-bff`: one gateway per client type.
    Bff,
    /// Everything else: contracts, tools, clients, tests.
    Other,
}

fn tier(folder: &str) -> Tier {
    let parts: Vec<&str> = folder.split('/').collect();
    match parts.as_slice() {
        ["crates", "platform", _] => Tier::Platform,
        ["crates", "services", _] => Tier::Service,
        ["crates", "bff", "screens"] => Tier::Screens,
        ["crates", "bff", _] => Tier::Bff,
        _ => Tier::Other,
    }
}

/// Why `from` may not depend on `to`, if it may not.
fn forbidden(from: Tier, to: Tier) -> Option<&'static str> {
    use Tier::*;
    match (from, to) {
        (Bff, Bff) => Some("a BFF never depends on another BFF"),
        (Service, Bff | Screens) => {
            Some("a downstream service never depends on a BFF or on screens")
        }
        (Platform, Service | Screens | Bff) => {
            Some("the platform crates never depend on a service, a BFF or screens")
        }
        (Screens, Service | Bff) => Some("screens reach services only through their contracts"),
        _ => None,
    }
}

/// The forbidden arrows among `crates` (name → folder) joined by `arrows`.
fn violations(crates: &BTreeMap<String, String>, arrows: &[(String, String)]) -> Vec<String> {
    arrows
        .iter()
        .filter_map(|(from, to)| {
            let (a, b) = (tier(&crates[from]), tier(&crates[to]));
            forbidden(a, b).map(|why| format!("{from} -> {to}: {why}"))
        })
        .collect()
}

/// The workspace's crates with their folders, and every arrow between them
/// (normal, build and dev dependencies alike).
fn workspace_graph() -> (BTreeMap<String, String>, Vec<(String, String)>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut crates = BTreeMap::new();
    for package in metadata["packages"].as_array().unwrap() {
        let manifest = Path::new(package["manifest_path"].as_str().unwrap());
        let folder = manifest.parent().unwrap().strip_prefix(root).unwrap();
        crates.insert(
            package["name"].as_str().unwrap().to_owned(),
            folder.to_string_lossy().into_owned(),
        );
    }
    let mut arrows = Vec::new();
    for package in metadata["packages"].as_array().unwrap() {
        let from = package["name"].as_str().unwrap();
        for dependency in package["dependencies"].as_array().unwrap() {
            let to = dependency["name"].as_str().unwrap();
            if crates.contains_key(to) {
                arrows.push((from.to_owned(), to.to_owned()));
            }
        }
    }
    (crates, arrows)
}

#[test]
fn no_forbidden_dependency_arrow_exists() {
    let (crates, arrows) = workspace_graph();
    // The tiers are really there: the check is not vacuous.
    for (name, expected) in [
        ("tailor-web-bff", Tier::Bff),
        ("tailor-orders", Tier::Service),
        ("tailor-interceptors", Tier::Platform),
        ("tailor-screens", Tier::Screens),
    ] {
        assert_eq!(tier(&crates[name]), expected, "{name} in {}", crates[name]);
    }
    assert!(arrows.len() > 30, "{arrows:?}");
    let found = violations(&crates, &arrows);
    assert!(
        found.is_empty(),
        "forbidden dependencies:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_rules_catch_each_forbidden_kind_of_arrow() {
    let crates: BTreeMap<String, String> = [
        ("web", "crates/bff/web-bff"),
        ("mobile", "crates/bff/mobile-bff"),
        ("screens", "crates/bff/screens"),
        ("orders", "crates/services/orders"),
        ("runtime", "crates/platform/runtime"),
        ("launcher", "crates/tools/launcher"),
    ]
    .into_iter()
    .map(|(n, f)| (n.to_owned(), f.to_owned()))
    .collect();
    let arrow = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    for bad in [
        arrow("web", "mobile"),
        arrow("orders", "web"),
        arrow("orders", "screens"),
        arrow("runtime", "orders"),
        arrow("runtime", "screens"),
        arrow("screens", "orders"),
    ] {
        assert_eq!(
            violations(&crates, std::slice::from_ref(&bad)).len(),
            1,
            "{bad:?}"
        );
    }
    for good in [
        arrow("web", "screens"),
        arrow("web", "runtime"),
        arrow("orders", "runtime"),
        arrow("launcher", "web"),
    ] {
        assert!(
            violations(&crates, std::slice::from_ref(&good)).is_empty(),
            "{good:?}"
        );
    }
}
