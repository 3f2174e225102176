//! The library namespace (stub).

/// Placeholder until the backend lands.
pub fn backend(
    _cfg: &crate::config::LibraryConfig,
    _http: crate::remote::http::HttpClient,
) -> Result<std::sync::Arc<dyn crate::fs::backend::Backend>, String> {
    Err("the library backend is not built yet".into())
}
