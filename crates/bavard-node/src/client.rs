//! A typed client of the HTTP API, used by the CLI subcommands.

use std::time::Duration;

use anyhow::{Context as _, bail};
use reqwest::StatusCode;

use crate::api::{MemberInfo, PeerInfo, PublishReply, PutReply, RoutingInfo, Status};

/// The options of a KV write (`PUT` or `DELETE /v1/kv/{key}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// `one`, `quorum`, `all` or `serial` (the node's default when `None`).
    pub consistency: Option<String>,
    /// Lifetime in seconds (puts only).
    pub ttl: Option<u64>,
    /// Write only if the current value has this version: a compare-and-set.
    pub if_version: Option<String>,
    /// Write only if the key has no live value: a compare-and-set.
    pub if_absent: bool,
}

impl WriteOptions {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if let Some(c) = &self.consistency {
            query.push(("consistency", c.clone()));
        }
        if let Some(t) = self.ttl {
            query.push(("ttl", t.to_string()));
        }
        if let Some(v) = &self.if_version {
            query.push(("if_version", v.clone()));
        }
        if self.if_absent {
            query.push(("if_absent", "true".to_string()));
        }
        query
    }
}

/// A client of one node's HTTP API.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    timeout: Duration,
    token: Option<String>,
    key_encoding: Option<String>,
}

/// Percent-encodes a key for use as one path segment.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// A client for the API at `api` (`http://HOST:PORT` or just `HOST:PORT`).
    pub fn new(api: &str, timeout: Duration) -> anyhow::Result<Self> {
        let base = if api.starts_with("http://") || api.starts_with("https://") {
            api.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", api.trim_end_matches('/'))
        };
        reqwest::Url::parse(&base).with_context(|| format!("invalid API address {api:?}"))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .context("cannot build HTTP client")?;
        Ok(Self {
            base,
            http,
            timeout,
            token: None,
            key_encoding: None,
        })
    }

    /// The same client, sending `token` as its bearer token (when `Some`).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// Sends keys as written in `encoding` (`utf8`, `hex`, `base64url`, or `cid` for the DHT
    /// and provider routes; see [`crate::keys`]): adds `?key_encoding=` to every key route.
    pub fn with_key_encoding(mut self, encoding: Option<String>) -> Self {
        self.key_encoding = encoding;
        self
    }

    /// The URL of `route` + `key` (one percent-encoded segment), with the key encoding.
    fn key_url(&self, route: &str, key: &str) -> String {
        let url = self.url(&format!("{route}{}", encode_key(key)));
        match &self.key_encoding {
            Some(e) => format!("{url}?key_encoding={}", encode_key(e)),
            None => url,
        }
    }

    /// The API base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        req.send()
            .await
            .with_context(|| format!("cannot reach the node API at {}", self.base))
    }

    async fn check(resp: reqwest::Response) -> anyhow::Result<reqwest::Response> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let msg = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or(body);
        bail!("{msg} (HTTP {})", status.as_u16())
    }

    /// `PUT /v1/kv/{key}`.
    pub async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        consistency: Option<&str>,
        ttl: Option<u64>,
    ) -> anyhow::Result<PutReply> {
        let opts = WriteOptions {
            consistency: consistency.map(str::to_string),
            ttl,
            ..WriteOptions::default()
        };
        self.put_with(key, value, &opts).await
    }

    /// `PUT /v1/kv/{key}` with every option: a condition makes it a compare-and-set (an error
    /// naming the current version when the condition fails, HTTP 409).
    pub async fn put_with(
        &self,
        key: &str,
        value: Vec<u8>,
        opts: &WriteOptions,
    ) -> anyhow::Result<PutReply> {
        let req = self
            .http
            .put(self.key_url("/v1/kv/", key))
            .query(&opts.query())
            .body(value);
        Ok(Self::check(self.send(req).await?).await?.json().await?)
    }

    /// `POST /v1/admin/cluster/token`: a join token (admin).
    pub async fn cluster_token(&self, ttl_secs: Option<u64>) -> anyhow::Result<String> {
        let mut req = self.http.post(self.url("/v1/admin/cluster/token"));
        if let Some(t) = ttl_secs {
            req = req.query(&[("ttl", t)]);
        }
        let v: serde_json::Value = Self::check(self.send(req).await?).await?.json().await?;
        v["token"]
            .as_str()
            .map(str::to_string)
            .context("the answer carries no token")
    }

    /// `POST /v1/admin/cluster/revoke/{peer}` (admin).
    pub async fn cluster_revoke(&self, peer: &str) -> anyhow::Result<serde_json::Value> {
        let req = self
            .http
            .post(self.url(&format!("/v1/admin/cluster/revoke/{}", encode_key(peer))));
        Ok(Self::check(self.send(req).await?).await?.json().await?)
    }

    /// `PUT /v1/dht/{key}`.
    pub async fn dht_put(&self, key: &str, value: Vec<u8>) -> anyhow::Result<serde_json::Value> {
        let req = self.http.put(self.key_url("/v1/dht/", key)).body(value);
        Ok(Self::check(self.send(req).await?).await?.json().await?)
    }

    /// `GET /v1/dht/{key}`: `Ok(None)` when nobody has it.
    pub async fn dht_get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let req = self.http.get(self.key_url("/v1/dht/", key));
        let resp = self.send(req).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(Self::check(resp).await?.bytes().await?.to_vec()))
    }

    fn signed_path(public_key: &[u8; 32], salt: &str) -> String {
        if salt.is_empty() {
            format!("/v1/signed/{}", hex::encode(public_key))
        } else {
            format!(
                "/v1/signed/{}/{}",
                hex::encode(public_key),
                encode_key(salt)
            )
        }
    }

    /// `PUT /v1/signed/{public_key}[/{salt}]`: puts a record signed by the caller.
    pub async fn signed_put(
        &self,
        record: &crate::kad::records::SignedRecord,
        cas: Option<u64>,
    ) -> anyhow::Result<serde_json::Value> {
        let salt = String::from_utf8(record.salt.clone()).context("salts are UTF-8 here")?;
        let mut query = vec![
            ("seq", record.seq.to_string()),
            ("sig", hex::encode(&record.signature)),
        ];
        if let Some(c) = cas {
            query.push(("cas", c.to_string()));
        }
        let req = self
            .http
            .put(self.url(&Self::signed_path(&record.public_key, &salt)))
            .query(&query)
            .body(record.value.clone());
        Ok(Self::check(self.send(req).await?).await?.json().await?)
    }

    /// `GET /v1/signed/{public_key}[/{salt}]`: the value and its sequence number, `Ok(None)`
    /// when nobody has a record.
    pub async fn signed_get(
        &self,
        public_key: &[u8; 32],
        salt: &str,
    ) -> anyhow::Result<Option<(Vec<u8>, u64)>> {
        let req = self
            .http
            .get(self.url(&Self::signed_path(public_key, salt)));
        let resp = self.send(req).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = Self::check(resp).await?;
        let seq = resp
            .headers()
            .get(crate::http::SEQ_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .context("the answer carries no sequence number")?;
        Ok(Some((resp.bytes().await?.to_vec(), seq)))
    }

    /// `GET /v1/kv/{key}`: `Ok(None)` when the key is absent.
    pub async fn get(
        &self,
        key: &str,
        consistency: Option<&str>,
    ) -> anyhow::Result<Option<(Vec<u8>, Option<String>)>> {
        let mut req = self.http.get(self.key_url("/v1/kv/", key));
        if let Some(c) = consistency {
            req = req.query(&[("consistency", c)]);
        }
        let resp = self.send(req).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = Self::check(resp).await?;
        let version = resp
            .headers()
            .get(crate::http::VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(Some((resp.bytes().await?.to_vec(), version)))
    }

    /// `DELETE /v1/kv/{key}`.
    pub async fn delete(&self, key: &str, consistency: Option<&str>) -> anyhow::Result<PutReply> {
        let opts = WriteOptions {
            consistency: consistency.map(str::to_string),
            ..WriteOptions::default()
        };
        self.delete_with(key, &opts).await
    }

    /// `DELETE /v1/kv/{key}` with every option (a condition makes it a compare-and-set; `ttl`
    /// does not apply).
    pub async fn delete_with(&self, key: &str, opts: &WriteOptions) -> anyhow::Result<PutReply> {
        let opts = WriteOptions {
            ttl: None,
            ..opts.clone()
        };
        let req = self
            .http
            .delete(self.key_url("/v1/kv/", key))
            .query(&opts.query());
        Ok(Self::check(self.send(req).await?).await?.json().await?)
    }

    /// `POST /v1/providers/{key}`.
    pub async fn provide(&self, key: &str) -> anyhow::Result<serde_json::Value> {
        let req = self.http.post(self.key_url("/v1/providers/", key));
        Ok(Self::check(self.send(req).await?).await?.json().await?)
    }

    /// `GET /v1/providers/{key}`.
    pub async fn providers(&self, key: &str) -> anyhow::Result<Vec<PeerInfo>> {
        let req = self.http.get(self.key_url("/v1/providers/", key));
        Ok(Self::check(self.send(req).await?).await?.json().await?)
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> anyhow::Result<Status> {
        let req = self.http.get(self.url("/v1/status"));
        Ok(Self::check(self.send(req).await?).await?.json().await?)
    }

    /// `GET /v1/peers`.
    pub async fn peers(&self) -> anyhow::Result<Vec<PeerInfo>> {
        let req = self.http.get(self.url("/v1/peers"));
        Ok(Self::check(self.send(req).await?).await?.json().await?)
    }

    /// `GET /v1/routing`.
    pub async fn routing(&self) -> anyhow::Result<RoutingInfo> {
        let req = self.http.get(self.url("/v1/routing"));
        Ok(Self::check(self.send(req).await?).await?.json().await?)
    }

    /// `GET /v1/members`.
    pub async fn members(&self) -> anyhow::Result<Vec<MemberInfo>> {
        let req = self.http.get(self.url("/v1/members"));
        Ok(Self::check(self.send(req).await?).await?.json().await?)
    }

    /// `GET /v1/topics`.
    pub async fn topics(&self) -> anyhow::Result<Vec<crate::api::TopicInfo>> {
        let req = self.http.get(self.url("/v1/topics"));
        Ok(Self::check(self.send(req).await?).await?.json().await?)
    }

    /// `POST /v1/topics/{topic}`.
    pub async fn publish(&self, topic: &str, payload: Vec<u8>) -> anyhow::Result<PublishReply> {
        let req = self
            .http
            .post(self.url(&format!("/v1/topics/{}", encode_key(topic))))
            .body(payload);
        Ok(Self::check(self.send(req).await?).await?.json().await?)
    }

    /// `GET /v1/topics/{topic}/events`: calls `on_message` with each message's payload (decoded
    /// from base64 for `binary` events) until the stream ends or `on_message` fails. No overall
    /// timeout applies: a subscription lasts as long as the node sends keep-alives.
    pub async fn subscribe(
        &self,
        topic: &str,
        mut on_message: impl FnMut(Vec<u8>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        use base64::Engine as _;
        use futures::StreamExt as _;
        let http = reqwest::Client::builder()
            .connect_timeout(self.timeout.min(Duration::from_secs(10)))
            .build()
            .context("cannot build HTTP client")?;
        let req = http.get(self.url(&format!("/v1/topics/{}/events", encode_key(topic))));
        let resp = Self::check(self.send(req).await?).await?;
        let mut body = resp.bytes_stream();
        let mut parser = SseParser::default();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.context("the event stream failed")?;
            for (event, data) in parser.push(&chunk) {
                let payload = if event == "binary" {
                    base64::engine::general_purpose::STANDARD
                        .decode(data.as_bytes())
                        .context("bad base64 in a binary event")?
                } else {
                    data.into_bytes()
                };
                on_message(payload)?;
            }
        }
        Ok(())
    }

    /// A client for transfers that may outlast the request timeout: it bounds connecting
    /// and each read by the timeout, not the whole exchange.
    fn transfer_client(&self) -> anyhow::Result<reqwest::Client> {
        reqwest::Client::builder()
            .connect_timeout(self.timeout)
            .read_timeout(self.timeout)
            .build()
            .context("cannot build HTTP client")
    }

    /// `POST /v1/blobs`: uploads the file at `path`, streamed.
    pub async fn blob_add(&self, path: &std::path::Path) -> anyhow::Result<crate::blobs::AddReply> {
        use tokio::io::AsyncReadExt as _;
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("cannot open {}", path.display()))?;
        let len = file
            .metadata()
            .await
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        let chunks = futures::stream::unfold(file, |mut file| async move {
            let mut buf = vec![0u8; 256 * 1024];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(buf), file))
                }
                Err(e) => Some((Err(e), file)),
            }
        });
        let req = self
            .transfer_client()?
            .post(self.url("/v1/blobs"))
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(chunks));
        Ok(Self::check(self.send(req).await?).await?.json().await?)
    }

    /// `GET /v1/blobs/{hash}`: the response, to stream its body (fetched by the node from
    /// providers when it does not hold the blob).
    pub async fn blob_get(&self, hash: &str) -> anyhow::Result<reqwest::Response> {
        let req = self
            .transfer_client()?
            .get(self.url(&format!("/v1/blobs/{}", encode_key(hash))));
        Self::check(self.send(req).await?).await
    }

    /// `GET /v1/blobs/{hash}/status`.
    pub async fn blob_status(&self, hash: &str) -> anyhow::Result<crate::blobs::BlobStatus> {
        let req = self
            .http
            .get(self.url(&format!("/v1/blobs/{}/status", encode_key(hash))));
        Ok(Self::check(self.send(req).await?).await?.json().await?)
    }

    /// `GET /v1/blobs`.
    pub async fn blobs(&self) -> anyhow::Result<Vec<crate::blobs::BlobEntry>> {
        let req = self.http.get(self.url("/v1/blobs"));
        Ok(Self::check(self.send(req).await?).await?.json().await?)
    }

    /// `DELETE /v1/blobs/{hash}/pin`.
    pub async fn blob_unpin(&self, hash: &str) -> anyhow::Result<serde_json::Value> {
        let req = self
            .http
            .delete(self.url(&format!("/v1/blobs/{}/pin", encode_key(hash))));
        Ok(Self::check(self.send(req).await?).await?.json().await?)
    }

    /// Any GET endpoint, as JSON.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let req = self.http.get(self.url(path));
        Ok(Self::check(self.send(req).await?).await?.json().await?)
    }
}

/// An incremental Server-Sent Events parser: feeds bytes, returns complete `(event, data)` pairs
/// (the event type defaults to `message`; multi-line data is joined with `\n`).
#[derive(Default)]
struct SseParser {
    buf: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    fn push(&mut self, bytes: &[u8]) -> Vec<(String, String)> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    let event = self.event.take().unwrap_or_else(|| "message".into());
                    out.push((event, data));
                }
                self.event = None;
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.event = Some(value.to_string()),
                "data" => match &mut self.data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => self.data = Some(value.to_string()),
                },
                _ => {} // comments (keep-alives), ids, retry
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_parser_joins_data_lines_and_skips_comments() {
        let mut p = SseParser::default();
        assert!(
            p.push(b": keep-alive\n\nevent: message\nid: ab\ndata: hel")
                .is_empty()
        );
        let got = p.push(b"lo\ndata: world\n\nevent: binary\ndata: AAE=\n\n");
        assert_eq!(
            got,
            vec![
                ("message".to_string(), "hello\nworld".to_string()),
                ("binary".to_string(), "AAE=".to_string())
            ]
        );
    }

    #[test]
    fn keys_are_percent_encoded_as_one_segment() {
        assert_eq!(encode_key("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_key("plain-key_1.x~"), "plain-key_1.x~");
        assert_eq!(encode_key("é"), "%C3%A9");
    }

    #[test]
    fn api_address_without_scheme_gets_http() {
        let c = Client::new("127.0.0.1:5001", Duration::from_secs(1)).unwrap();
        assert_eq!(c.base(), "http://127.0.0.1:5001");
        assert!(Client::new("http://[::1", Duration::from_secs(1)).is_err());
    }

    #[test]
    fn write_options_become_the_documented_query_parameters() {
        let cas = WriteOptions {
            if_version: Some("42".into()),
            ttl: Some(9),
            ..WriteOptions::default()
        };
        assert_eq!(
            cas.query(),
            [("ttl", "9".to_string()), ("if_version", "42".to_string())]
        );
        let absent = WriteOptions {
            if_absent: true,
            consistency: Some("serial".into()),
            ..WriteOptions::default()
        };
        assert_eq!(
            absent.query(),
            [
                ("consistency", "serial".to_string()),
                ("if_absent", "true".to_string())
            ]
        );
        assert!(WriteOptions::default().query().is_empty());
    }
}
