//! The Intel PCS / PCCS client: fetches TCB info, QE identity and the PCK and root
//! CA CRLs with their issuer chains, one request in flight per key (single-flight
//! slots), bounded bodies and a timeout, and caches the verified answer.

use super::*;

pub(super) struct Pcs {
    pub(super) root_ca_der: Vec<u8>,
    pub(super) client: reqwest::Client,
    pub(super) base: String,
    pub(super) root_ca_crl: RootCaCrl,
    pub(super) api_key: Option<reqwest::header::HeaderValue>,
    pub(super) timeout: Duration,
    pub(super) cache_dir: Option<PathBuf>,
    pub(super) shared: Option<Arc<dyn SharedCache>>,
    pub(super) slots: Mutex<HashMap<(Fmspc, PckCa), Arc<Slot>>>,
}

/// One key's cache entry. The async lock makes concurrent gets for a key wait for
/// one fetch instead of each fetching.
#[derive(Default)]
pub(super) struct Slot {
    state: tokio::sync::Mutex<SlotState>,
    /// Completed fetch attempts; a waiter that saw an attempt finish while it waited
    /// shares that attempt's error instead of retrying at once.
    attempts: AtomicU64,
}

#[derive(Default)]
pub(super) struct SlotState {
    entry: Option<Arc<FetchedCollateral>>,
    last_error: Option<CollateralError>,
}

impl Pcs {
    pub(super) fn new(cfg: PcsConfig) -> Result<Pcs, CollateralError> {
        let base = normalise_base(&cfg.base_url)?;
        if let RootCaCrl::Url(u) = &cfg.root_ca_crl {
            check_http_url(u)?;
        }
        if cfg.timeout.is_zero() {
            return Err(CollateralError::Config("timeout must not be zero".into()));
        }
        // No redirects: PCS and PCCS do not redirect, and following one would take
        // the API key to another host.
        let mut builder = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("provenant-cp-verifier/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &cfg.tls_roots_pem {
            let roots = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| CollateralError::Config(format!("TLS roots: {e}")))?;
            if roots.is_empty() {
                return Err(CollateralError::Config("TLS roots: no certificate".into()));
            }
            for r in roots {
                builder = builder.add_root_certificate(r);
            }
        }
        let client = builder
            .build()
            .map_err(|e| CollateralError::Config(format!("HTTP client: {e}")))?;
        let api_key = match &cfg.api_key {
            Some(k) => {
                let mut v = reqwest::header::HeaderValue::from_str(k)
                    .map_err(|_| CollateralError::Config("API key is not a valid header".into()))?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        if let Some(dir) = &cfg.cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                CollateralError::Config(format!("cache directory {}: {e}", dir.display()))
            })?;
        }
        Ok(Pcs {
            root_ca_der: cfg
                .root_ca_der
                .clone()
                .unwrap_or_else(|| crate::attest::dcap::INTEL_SGX_ROOT_CA_DER.to_vec()),
            client,
            base,
            root_ca_crl: cfg.root_ca_crl,
            api_key,
            timeout: cfg.timeout,
            cache_dir: cfg.cache_dir,
            shared: None,
            slots: Mutex::new(HashMap::new()),
        })
    }

    pub(super) fn slot(&self, key: (Fmspc, PckCa), now: u64) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if !slots.contains_key(&key) && slots.len() >= MAX_MEMORY_KEYS {
            // Keep keys being fetched (locked) and keys with an unexpired entry.
            slots.retain(|_, s| match s.state.try_lock() {
                Ok(st) => st.entry.as_ref().is_some_and(|e| now < e.expires_at),
                Err(_) => true,
            });
        }
        slots.entry(key).or_default().clone()
    }

    pub(super) async fn get(
        &self,
        fmspc: Fmspc,
        ca: PckCa,
        now: u64,
    ) -> Result<Arc<FetchedCollateral>, CollateralError> {
        let slot = self.slot((fmspc, ca), now);
        let seen = slot.attempts.load(Ordering::Acquire);
        let mut st = slot.state.lock().await;
        if let Some(e) = &st.entry {
            if now < e.expires_at {
                return e.clone().usable_at(now);
            }
            st.entry = None; // expired: never served again
        }
        if slot.attempts.load(Ordering::Acquire) != seen {
            if let Some(err) = &st.last_error {
                return Err(err.clone());
            }
        }
        if let Some(fc) = self.read_shared(fmspc, ca, now).await {
            st.entry = Some(fc.clone());
            return fc.usable_at(now);
        }
        if let Some(fc) = self.read_disk(fmspc, ca, now) {
            st.entry = Some(fc.clone());
            return fc.usable_at(now);
        }
        // Verified before anything is cached: a forged answer is never kept.
        let outcome = self.fetch(fmspc, ca).await.and_then(|fc| {
            if fc.fmspc != fmspc {
                return Err(CollateralError::FmspcMismatch {
                    want: fmspc,
                    got: fc.fmspc,
                });
            }
            verify_collateral(&fc.collateral, &self.root_ca_der)?;
            Ok(Arc::new(fc))
        });
        if let Ok(fc) = &outcome {
            if now < fc.expires_at {
                st.entry = Some(fc.clone());
                self.write_disk(fmspc, ca, fc);
                if let (Some(shared), Ok(json)) = (&self.shared, serde_json::to_vec(&fc.collateral))
                {
                    shared
                        .save(
                            &shared_key(fmspc, ca),
                            &json,
                            UnixSecs::from_unsigned(fc.expires_at),
                        )
                        .await;
                }
            }
        }
        let outcome = outcome.and_then(|fc| fc.usable_at(now));
        if let Err(e) = &outcome {
            tracing::warn!(%fmspc, %ca, error = %e, "no usable collateral");
        }
        st.last_error = outcome.as_ref().err().cloned();
        slot.attempts.fetch_add(1, Ordering::Release);
        outcome
    }

    pub(super) async fn read_shared(
        &self,
        fmspc: Fmspc,
        ca: PckCa,
        now: u64,
    ) -> Option<Arc<FetchedCollateral>> {
        let key = shared_key(fmspc, ca);
        let bytes = self.shared.as_ref()?.load(&key).await?;
        match parse_cached(&bytes, fmspc, &format!("shared cache {key}")).and_then(|fc| {
            verify_collateral(&fc.collateral, &self.root_ca_der)?;
            Ok(fc)
        }) {
            Ok(fc) if now < fc.expires_at => Some(Arc::new(fc)),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(%key, error = %e, "ignoring shared collateral cache entry");
                None
            }
        }
    }

    pub(super) fn read_disk(
        &self,
        fmspc: Fmspc,
        ca: PckCa,
        now: u64,
    ) -> Option<Arc<FetchedCollateral>> {
        let path = self.cache_dir.as_ref()?.join(cache_file_name(fmspc, ca));
        let read = read_collateral_file(&path, fmspc).and_then(|fc| match fc {
            Some(fc) => verify_collateral(&fc.collateral, &self.root_ca_der).map(|()| Some(fc)),
            None => Ok(None),
        });
        match read {
            Ok(Some(fc)) if now < fc.expires_at => Some(Arc::new(fc)),
            Ok(_) => None,
            Err(e) => {
                // Evicted: a corrupted or forged file is not read again.
                tracing::warn!(path = %path.display(), error = %e, "removing a collateral cache file that does not verify");
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove the collateral cache file");
                }
                None
            }
        }
    }

    /// Atomic: a temporary file in the same directory, renamed over the old one.
    /// A failure is logged, not returned: the collateral in hand is still good.
    pub(super) fn write_disk(&self, fmspc: Fmspc, ca: PckCa, fc: &FetchedCollateral) {
        let Some(dir) = &self.cache_dir else { return };
        let path = dir.join(cache_file_name(fmspc, ca));
        let write = || -> Result<(), String> {
            use std::io::Write;
            let json = serde_json::to_vec(&fc.collateral).map_err(|e| e.to_string())?;
            let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| e.to_string())?;
            tmp.write_all(&json).map_err(|e| e.to_string())?;
            tmp.as_file().sync_all().map_err(|e| e.to_string())?;
            tmp.persist(&path).map_err(|e| e.to_string())?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::warn!(path = %path.display(), error = %e, "could not write collateral cache");
        }
    }

    pub(super) fn url(&self, tee: &str, path: &str) -> String {
        format!("{}/{tee}/certification/v4/{path}", self.base)
    }

    pub(super) async fn fetch(
        &self,
        fmspc: Fmspc,
        ca: PckCa,
    ) -> Result<FetchedCollateral, CollateralError> {
        let fmspc_upper = hex::encode_upper(fmspc.0);
        let tcb_url = self.url("tdx", &format!("tcb?fmspc={fmspc_upper}"));
        let qe_url = self.url("tdx", "qe/identity");
        let pck_url = self.url("sgx", &format!("pckcrl?ca={ca}&encoding=der"));
        let (root_url, root_key) = match &self.root_ca_crl {
            RootCaCrl::Pccs => (self.url("sgx", "rootcacrl"), true),
            RootCaCrl::Url(u) => (u.clone(), false),
        };
        let tcb = async {
            let (h, body) = self
                .http_get(Endpoint::TcbInfo, &tcb_url, true, MAX_JSON_BODY_BYTES)
                .await
                .map_err(|e| match e {
                    CollateralError::HttpStatus {
                        endpoint,
                        status: 404,
                    } => CollateralError::UnknownFmspc { endpoint, fmspc },
                    e => e,
                })?;
            let chain = issuer_chain(Endpoint::TcbInfo, &h, &TCB_INFO_CHAIN_HEADERS)?;
            let (json, sig) = signed_json(Endpoint::TcbInfo, &body, "tcbInfo")?;
            Ok::<_, CollateralError>((chain, json, sig))
        };
        let qe = async {
            let (h, body) = self
                .http_get(Endpoint::QeIdentity, &qe_url, true, MAX_JSON_BODY_BYTES)
                .await?;
            let chain = issuer_chain(Endpoint::QeIdentity, &h, &QE_IDENTITY_CHAIN_HEADERS)?;
            let (json, sig) = signed_json(Endpoint::QeIdentity, &body, "enclaveIdentity")?;
            Ok((chain, json, sig))
        };
        let pck = async {
            let (h, body) = self
                .http_get(Endpoint::PckCrl, &pck_url, true, MAX_CRL_BODY_BYTES)
                .await?;
            let chain = issuer_chain(Endpoint::PckCrl, &h, &PCK_CRL_CHAIN_HEADERS)?;
            let der = crl_der(&body).map_err(|detail| CollateralError::MalformedBody {
                endpoint: Endpoint::PckCrl,
                detail,
            })?;
            Ok((chain, der))
        };
        let root = async {
            let (_, body) = self
                .http_get(Endpoint::RootCaCrl, &root_url, root_key, MAX_CRL_BODY_BYTES)
                .await?;
            crl_der(&body).map_err(|detail| CollateralError::MalformedBody {
                endpoint: Endpoint::RootCaCrl,
                detail,
            })
        };
        let (
            (tcb_chain, tcb_info, tcb_sig),
            (qe_chain, qe_identity, qe_sig),
            (pck_chain, pck_crl),
            root_ca_crl,
        ) = tokio::try_join!(tcb, qe, pck, root)?;
        let collateral = QuoteCollateralV3 {
            pck_crl_issuer_chain: pck_chain,
            root_ca_crl,
            pck_crl,
            tcb_info_issuer_chain: tcb_chain,
            tcb_info,
            tcb_info_signature: tcb_sig,
            qe_identity_issuer_chain: qe_chain,
            qe_identity,
            qe_identity_signature: qe_sig,
            pck_certificate_chain: None,
        };
        FetchedCollateral::from_collateral(collateral)
    }

    /// GET with the size bound enforced on the bytes read (and on Content-Length
    /// before reading). Returns the headers and body of a 2xx answer.
    pub(super) async fn http_get(
        &self,
        endpoint: Endpoint,
        url: &str,
        send_key: bool,
        limit: usize,
    ) -> Result<(reqwest::header::HeaderMap, Vec<u8>), CollateralError> {
        let net = |e: reqwest::Error| {
            if e.is_timeout() {
                CollateralError::Timeout {
                    endpoint,
                    timeout: self.timeout,
                }
            } else {
                CollateralError::Transport {
                    endpoint,
                    detail: provenant_base::errors::chain(&e),
                }
            }
        };
        let mut req = self.client.get(url);
        if let (true, Some(k)) = (send_key, &self.api_key) {
            req = req.header(API_KEY_HEADER, k.clone());
        }
        let mut resp = req.send().await.map_err(net)?;
        let status = resp.status();
        if !status.is_success() {
            tracing::debug!(%url, %status, "collateral endpoint refused");
            return Err(CollateralError::HttpStatus {
                endpoint,
                status: status.as_u16(),
            });
        }
        let too_big = CollateralError::Oversized { endpoint, limit };
        if resp
            .content_length()
            .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > limit))
        {
            return Err(too_big);
        }
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(net)? {
            if body.len().saturating_add(chunk.len()) > limit {
                return Err(too_big);
            }
            body.extend_from_slice(&chunk);
        }
        Ok((headers, body))
    }
}

pub(super) fn check_http_url(u: &str) -> Result<reqwest::Url, CollateralError> {
    let url =
        reqwest::Url::parse(u).map_err(|e| CollateralError::Config(format!("URL {u}: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(CollateralError::Config(format!(
            "URL {u}: not an http(s) URL with a host"
        )));
    }
    Ok(url)
}

pub(super) fn normalise_base(u: &str) -> Result<String, CollateralError> {
    let url = check_http_url(u)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(CollateralError::Config(format!(
            "base URL {u}: no query or fragment allowed"
        )));
    }
    let s = u.trim_end_matches('/');
    let s = s
        .strip_suffix("/sgx/certification/v4")
        .or_else(|| s.strip_suffix("/tdx/certification/v4"))
        .unwrap_or(s);
    Ok(s.to_string())
}

/// Splits `{"<field>": {...signed...}, "signature": "<hex>"}`, keeping the signed
/// value as the exact bytes received.
pub(super) fn signed_json(
    endpoint: Endpoint,
    body: &[u8],
    field: &'static str,
) -> Result<(String, Vec<u8>), CollateralError> {
    #[derive(serde::Deserialize)]
    struct TcbInfoBody<'a> {
        #[serde(rename = "tcbInfo", borrow)]
        signed: &'a RawValue,
        signature: String,
    }
    #[derive(serde::Deserialize)]
    struct QeIdentityBody<'a> {
        #[serde(rename = "enclaveIdentity", borrow)]
        signed: &'a RawValue,
        signature: String,
    }
    let bad = |detail: String| CollateralError::MalformedBody { endpoint, detail };
    let (signed, signature) = match field {
        "tcbInfo" => serde_json::from_slice::<TcbInfoBody<'_>>(body)
            .map(|b| (b.signed.get().to_string(), b.signature)),
        _ => serde_json::from_slice::<QeIdentityBody<'_>>(body)
            .map(|b| (b.signed.get().to_string(), b.signature)),
    }
    .map_err(|e| bad(e.to_string()))?;
    if !signed.starts_with('{') {
        return Err(bad(format!("{field} is not an object")));
    }
    let sig = hex::decode(&signature).map_err(|e| bad(format!("signature: {e}")))?;
    if sig.len() != 64 {
        return Err(bad(format!("signature is {} bytes, not 64", sig.len())));
    }
    Ok((signed, sig))
}

/// The URL-encoded PEM chain in the first present header of `names`.
pub(super) fn issuer_chain(
    endpoint: Endpoint,
    headers: &reqwest::header::HeaderMap,
    names: &[&'static str],
) -> Result<String, CollateralError> {
    let primary = names.first().copied().unwrap_or_default();
    let (header, value) = names
        .iter()
        .find_map(|n| headers.get(*n).map(|v| (*n, v)))
        .ok_or(CollateralError::MissingHeader {
            endpoint,
            header: primary,
        })?;
    let bad = |detail: String| CollateralError::MalformedHeader {
        endpoint,
        header,
        detail,
    };
    if value.len() > MAX_ISSUER_CHAIN_BYTES {
        return Err(bad(format!("over {MAX_ISSUER_CHAIN_BYTES} bytes")));
    }
    let text = value
        .to_str()
        .map_err(|_| bad("not visible ASCII".into()))?;
    let pem = percent_decode(text).map_err(bad)?;
    check_chain(&pem).map_err(bad)?;
    Ok(pem)
}

/// A PEM chain of at least one certificate. Only the shape: dcap-qvl checks it.
pub(super) fn check_chain(pem: &str) -> Result<(), String> {
    let certs = provenant_base::pem::certificates(pem).map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate".into());
    }
    Ok(())
}

/// Strict percent-decoding (`+` is literal, as Intel encodes spaces as `%20`).
pub(super) fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or("truncated %-escape")?;
            let mut v = [0u8; 1];
            hex::decode_to_slice(hex, &mut v).map_err(|_| "invalid %-escape")?;
            out.push(v[0]);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once decoded".into())
}

/// A CRL body: DER as is, or hex text (what a PCCS serves for the root CA CRL).
pub(super) fn crl_der(body: &[u8]) -> Result<Vec<u8>, String> {
    if body.first() == Some(&0x30) {
        return Ok(body.to_vec());
    }
    let text = body.trim_ascii();
    if !text.is_empty() && text.iter().all(u8::is_ascii_hexdigit) {
        return hex::decode(text).map_err(|e| format!("hex CRL: {e}"));
    }
    Err("neither DER nor hex".into())
}
