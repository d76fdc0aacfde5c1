//! The monitoring and deployment kit in `deploy/`: every metric that the Grafana dashboard and
//! the Prometheus rules name exists in a live node's `GET /metrics`, the files parse, and the
//! container, compose and Kubernetes files agree on ports and paths.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::start_cluster;

/// Families whose series appear only after an event this test does not cause; for them the test
/// asks only that `/metrics` declares the family (`# TYPE`) with the type the suffix implies.
const DECLARED_ONLY: &[(&str, &str)] = &[
    (
        "bavard_anti_entropy_failures",
        "labelled by reason; a series appears at the first failed anti-entropy round",
    ),
    (
        "bavard_inbound_rejected",
        "labelled by reason; a series appears at the first rejected stream or request",
    ),
];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn read(rel: &str) -> String {
    let path = deploy_dir().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every `bavard_…` metric name in a PromQL expression.
fn metric_names(expr: &str, out: &mut BTreeSet<String>) {
    let bytes = expr.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut i = 0;
    while let Some(found) = expr[i..].find("bavard_") {
        let start = i + found;
        let mut end = start + "bavard_".len();
        while end < bytes.len() && word(bytes[end]) {
            end += 1;
        }
        // A whole identifier (not inside a longer word, not a label value like "bavard_x").
        let boundary = start == 0 || !word(bytes[start - 1]);
        let quoted = start > 0 && bytes[start - 1] == b'"';
        if boundary && !quoted {
            out.insert(expr[start..end].to_string());
        }
        i = end;
    }
}

/// The PromQL expressions of the dashboard: every target's `expr` and every templating query.
fn dashboard_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    ("query", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// A small YAML check (no YAML parser in the dependency tree): no tabs, and the `expr:` values,
/// each a one-line scalar or a block scalar (`|`, `>`) of the lines indented below it.
fn yaml_exprs(text: &str, file: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut exprs = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        assert!(!line.contains('\t'), "{file}:{}: a tab in YAML", n + 1);
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') {
            continue;
        }
        let Some(value) = trimmed.strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let block: Vec<&str> = lines[n + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || indent(l) > indent(line))
                .map(|l| l.trim())
                .collect();
            exprs.push(block.join(" "));
        } else {
            assert!(!value.is_empty(), "{file}:{}: empty expr", n + 1);
            exprs.push(value.trim_matches(|c| c == '\'' || c == '"').to_string());
        }
    }
    exprs
}

/// Runs promtool on `args` when it is installed (Debian's `prometheus` package); `false` when
/// it is not.
fn promtool(args: &[&str]) -> bool {
    match std::process::Command::new("promtool").args(args).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "promtool {args:?} failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            true
        }
        Err(_) => false,
    }
}

/// The sample names and the declared families (`# TYPE name type`) of a metrics exposition.
fn exposition(text: &str) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let mut samples = BTreeSet::new();
    let mut families = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                families.insert(name.to_string(), kind.to_string());
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            samples.insert(line[..end].to_string());
        }
    }
    (samples, families)
}

/// The family a sample name belongs to and the type its suffix implies.
fn family_of(name: &str) -> (&str, &str) {
    for (suffix, kind) in [
        ("_bucket", "histogram"),
        ("_sum", "histogram"),
        ("_count", "histogram"),
        ("_total", "counter"),
    ] {
        if let Some(base) = name.strip_suffix(suffix) {
            return (base, kind);
        }
    }
    (name, "gauge")
}

#[test]
fn dashboard_and_rules_parse_and_are_well_formed() {
    let dash: serde_json::Value =
        serde_json::from_str(&read("grafana/bavard.json")).expect("bavard.json is JSON");
    assert_eq!(dash["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(dash["__inputs"][0]["pluginId"], "prometheus");
    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut with_targets = 0;
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate panel id"
        );
        if let Some(targets) = p["targets"].as_array() {
            with_targets += 1;
            assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
                assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()));
            }
        }
    }
    assert!(
        with_targets >= 15,
        "only {with_targets} panels with queries"
    );

    let rules = read("prometheus/rules.yml");
    assert!(rules.contains("\ngroups:\n"), "rules.yml has no groups");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(str::trim)
        .collect();
    let exprs = yaml_exprs(&rules, "rules.yml");
    assert_eq!(alerts.len(), exprs.len(), "every alert has one expr");
    assert_eq!(
        alerts.iter().collect::<BTreeSet<_>>().len(),
        alerts.len(),
        "alert names are unique"
    );
    for wanted in [
        "bavard_quorum_failures_total",
        "bavard_hints_queued",
        "bavard_gossip_members",
        "bavard_storage_failed",
        "up{",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(wanted)),
            "no alert on {wanted}"
        );
    }

    let scrape = read("prometheus/prometheus.yml");
    let _ = yaml_exprs(&scrape, "prometheus.yml");
    for key in [
        "scrape_configs:",
        "static_configs:",
        "file_sd_configs:",
        "metrics_path: /metrics",
        "- rules.yml",
    ] {
        assert!(scrape.contains(key), "prometheus.yml lacks {key}");
    }

    // The real parser, where Prometheus is installed.
    let dir = deploy_dir().join("prometheus");
    if promtool(&["check", "rules", dir.join("rules.yml").to_str().unwrap()]) {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("token"), "x").unwrap();
        std::fs::copy(dir.join("rules.yml"), tmp.path().join("rules.yml")).unwrap();
        let config = scrape.replace("/etc/prometheus/bavard-api.token", "token");
        std::fs::write(tmp.path().join("prometheus.yml"), config).unwrap();
        assert!(promtool(&[
            "check",
            "config",
            tmp.path().join("prometheus.yml").to_str().unwrap()
        ]));
    } else {
        eprintln!("promtool not installed (apt-get install prometheus): checked by hand only");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_of_the_dashboard_and_the_rules_is_served() {
    let mut exprs = Vec::new();
    let dash: serde_json::Value = serde_json::from_str(&read("grafana/bavard.json")).unwrap();
    dashboard_exprs(&dash, &mut exprs);
    exprs.extend(yaml_exprs(&read("prometheus/rules.yml"), "rules.yml"));
    let mut wanted = BTreeSet::new();
    for e in &exprs {
        metric_names(e, &mut wanted);
    }
    assert!(
        wanted.len() >= 25,
        "only {} metrics named: {wanted:?}",
        wanted.len()
    );

    // Two nodes, so that node 0 serves Kademlia requests and sees a member; a put and a get
    // through the HTTP API fill the stage histograms.
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), 2, 1).await;
    let node = &nodes[0];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(bavard_node::http::serve(
        listener,
        node.clone(),
        bavard_node::http::Access::with_token("test-token-0123456789", false),
        node.shutdown_signal(),
    ));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let base = format!("http://{addr}");
    let put = http
        .put(format!("{base}/v1/kv/deploy-kit?consistency=one"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "put: {}", put.status());
    let get = http
        .get(format!("{base}/v1/kv/deploy-kit?consistency=one"))
        .send()
        .await
        .unwrap();
    assert!(get.status().is_success(), "get: {}", get.status());

    let declared_only: BTreeMap<&str, &str> = DECLARED_ONLY.iter().copied().collect();
    let mut missing = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let (samples, families) = exposition(&text);
        missing.clear();
        for name in &wanted {
            if samples.contains(name) {
                continue;
            }
            let (family, kind) = family_of(name);
            let declared = families.get(family).map(String::as_str);
            if declared_only.contains_key(family) && declared == Some(kind) {
                continue;
            }
            missing.push(format!(
                "{name} (family {family}: declared as {declared:?}, the name implies {kind})"
            ));
        }
        if missing.is_empty() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "metrics named by deploy/ but not served by GET /metrics:\n  {}\n\n/metrics:\n{text}",
                missing.join("\n  ")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The exempt families are really named by the kit (else the list is stale).
    for family in declared_only.keys() {
        assert!(
            wanted.iter().any(|n| family_of(n).0 == *family),
            "{family} is exempt but not used"
        );
    }
    for n in nodes {
        n.shutdown().await;
    }
}

#[test]
fn image_compose_and_kubernetes_agree_on_ports_and_paths() {
    let containerfile = read("Containerfile");
    for needle in [
        "FROM scratch",
        "EXPOSE 4001/tcp 4001/udp 5001/tcp",
        "VOLUME /data",
        "USER 10001:10001",
        "\"--data-dir\", \"/data\"",
        "\"/ip4/0.0.0.0/tcp/4001\"",
        "\"/ip4/0.0.0.0/udp/4001/quic-v1\"",
        "\"--api\", \"0.0.0.0:5001\"",
    ] {
        assert!(
            containerfile.contains(needle),
            "Containerfile lacks {needle}"
        );
    }
    let compose = read("compose.yaml");
    let _ = yaml_exprs(&compose, "compose.yaml");
    for needle in [
        "node1:",
        "node2:",
        "node3:",
        ":/data",
        "/tcp/4001/p2p/",
        "--join",
        "api.token",
    ] {
        assert!(compose.contains(needle), "compose.yaml lacks {needle}");
    }
    let mut k8s = String::new();
    for entry in std::fs::read_dir(deploy_dir().join("k8s")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let _ = yaml_exprs(&text, &path.display().to_string());
            k8s.push_str(&text);
        }
    }
    for needle in [
        "kind: StatefulSet",
        "kind: Service",
        "clusterIP: None",
        "kind: Secret",
        "volumeClaimTemplates:",
        "mountPath: /data",
        "containerPort: 4001",
        "containerPort: 5001",
        "readinessProbe:",
        "status",
        "BAVARD_TOKEN",
    ] {
        assert!(k8s.contains(needle), "deploy/k8s lacks {needle}");
    }
}
