//! The blob subcommands of the `bavard` binary (`add`, `fetch`, `blobs`, `unpin`): part of
//! `main.rs`, kept apart because `fetch` draws a progress bar.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bavard_node::client::Client;
use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::AsyncWriteExt as _;

/// `bavard add FILE`: uploads the file, prints its hash.
pub(crate) async fn add(client: &Client, file: &Path) -> anyhow::Result<()> {
    let reply = client.blob_add(file).await?;
    println!("{}", reply.hash);
    eprintln!(
        "added {} ({} bytes), announced to {} node(s)",
        file.display(),
        reply.size,
        reply.announced
    );
    Ok(())
}

/// `bavard fetch HASH [-o FILE]`: streams the blob through the node into FILE (or stdout),
/// with a progress bar on stderr (bytes, rate, providers), then checks the file's hash.
pub(crate) async fn fetch(
    client: &Client,
    hash: &str,
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let expected = bavard_node::blobs::parse_hash(hash)?;
    let started = Instant::now();
    let resp = client.blob_get(hash).await?;
    let total = resp.content_length();
    let bar = match total {
        Some(len) => ProgressBar::new(len),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message("providers: -");
    // The providers come from the node's fetch status, polled beside the transfer.
    let poller = {
        let (client, hash, bar) = (client.clone(), hash.to_string(), bar.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(status) = client.blob_status(&hash).await {
                    bar.set_message(providers_message(&status));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let result = copy_body(resp, output, &bar).await;
    poller.abort();
    let received = result?;
    if let Some(len) = total
        && received != len
    {
        bar.abandon();
        anyhow::bail!("the node ended the transfer after {received} of {len} bytes");
    }
    bar.finish();
    if let Some(path) = output {
        let file = std::fs::File::open(path)?;
        let (hash, _) = tokio::task::spawn_blocking(move || {
            bavard_blobs::encoding::hash_reader(std::io::BufReader::new(file))
        })
        .await??;
        if hash != expected {
            anyhow::bail!("{} hashes to {hash}, not {expected}", path.display());
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let status = client.blob_status(hash).await.ok();
    eprintln!(
        "fetched {received} bytes in {secs:.1} s ({:.1} MiB/s){}",
        received as f64 / secs.max(1e-9) / (1 << 20) as f64,
        status
            .map(|s| format!(", {}", providers_message(&s)))
            .unwrap_or_default()
    );
    Ok(())
}

fn providers_message(status: &bavard_node::blobs::BlobStatus) -> String {
    if status.providers.is_empty() {
        return "providers: none (held here)".into();
    }
    let active = status.providers.iter().filter(|p| p.active).count();
    let used = status.providers.iter().filter(|p| p.bytes > 0).count();
    format!("providers: {active} active, {used} delivered")
}

/// Writes the body to `output` (through `FILE.part`, renamed at the end) or stdout;
/// returns the bytes received.
async fn copy_body(
    resp: reqwest::Response,
    output: Option<&Path>,
    bar: &ProgressBar,
) -> anyhow::Result<u64> {
    let part = output.map(|p| {
        let mut name = p.as_os_str().to_owned();
        name.push(".part");
        std::path::PathBuf::from(name)
    });
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match &part {
        Some(path) => Box::new(
            tokio::fs::File::create(path)
                .await
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(tokio::io::stdout()),
    };
    let mut body = resp.bytes_stream();
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .context("the transfer failed (the node may have lost every provider; see its log)")?;
        out.write_all(&chunk).await?;
        received += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
    }
    out.flush().await?;
    drop(out);
    if let (Some(part), Some(path)) = (part, output) {
        tokio::fs::rename(&part, path)
            .await
            .with_context(|| format!("cannot rename {} to {}", part.display(), path.display()))?;
    }
    Ok(received)
}
