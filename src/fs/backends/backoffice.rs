//! The backoffice namespace (stub).

type Pair = (std::sync::Arc<dyn crate::fs::backend::Backend>, std::sync::Arc<dyn crate::fs::backend::Backend>);

/// Placeholder until the backend lands.
pub fn backends(_cfg: &crate::config::BackofficeConfig, _http: crate::remote::http::HttpClient) -> Result<Pair, String> {
    Err("the back-office backend is not built yet".into())
}
