//! Emulator of the back-office API (API-CONTRACT.md §1): client files and
//! client folders, the folder tree shared by all clients in the same folder-id
//! space, user-group permissions with the non-idempotent toggle, content with
//! `Range`/`HEAD`, `limit`/`offset` paging, Bearer token.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{FromRequest, Multipart, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{bearer_ok, content, demo_bytes, demo_text, hexbytes, json_error, Emu};
use super::{iso, now_ms};

/// A folder: shared by all clients (`client: None`) or a client's own.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Folder {
    pub id: u64,
    pub name: String,
    pub client: Option<u64>,
    pub parent: Option<u64>,
    pub created: i64,
    pub updated: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientFile {
    pub id: u64,
    pub client: u64,
    pub caption: String,
    /// The stored path, `y/<epoch>_<file name>`.
    pub file: String,
    pub directory: Option<u64>,
    pub priority: u64,
    #[serde(with = "hexbytes")]
    pub bytes: Bytes,
    /// Unix milliseconds of the upload.
    pub uploaded: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Group {
    pub id: u64,
    pub caption: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct BackofficeState {
    pub clients: BTreeSet<u64>,
    pub folders: BTreeMap<u64, Folder>,
    pub files: BTreeMap<u64, ClientFile>,
    pub groups: Vec<Group>,
    /// `"<folder>:<group>"` → access granted.
    pub permissions: BTreeMap<String, bool>,
    pub next_folder: u64,
    pub next_file: u64,
}

impl BackofficeState {
    /// Clients 1, 2 and 3 and the three user groups; no folders or files.
    pub fn empty() -> Self {
        BackofficeState {
            clients: [1, 2, 3].into_iter().collect(),
            groups: vec![
                Group {
                    id: 1,
                    caption: "Administrators".into(),
                },
                Group {
                    id: 2,
                    caption: "B2B Account Manager".into(),
                },
                Group {
                    id: 3,
                    caption: "B2B L1 Support".into(),
                },
            ],
            next_folder: 1,
            next_file: 1,
            ..Default::default()
        }
    }

    /// A shared tree with group permissions, own nested folders per client,
    /// files in shared and own folders and at the root, duplicate captions,
    /// a caption without extension, one with `/`, one over 255 bytes.
    pub fn demo() -> Self {
        let mut s = Self::empty();
        let t = 1_662_913_861_000i64;
        let onboarding = s.add_folder_at(None, None, "Onboarding", t);
        let kyc = s.add_folder_at(None, Some(onboarding), "KYC", t);
        let contracts = s.add_folder_at(None, None, "Contracts", t);
        let statements = s.add_folder_at(None, None, "Statements", t);
        let y2025 = s.add_folder_at(None, Some(statements), "2025", t);
        for (folder, grants) in [
            (onboarding, [true, true, false]),
            (kyc, [true, false, false]),
            (contracts, [true, true, true]),
            (statements, [true, false, true]),
            (y2025, [true, false, true]),
        ] {
            for (g, on) in grants.iter().enumerate() {
                s.permissions.insert(format!("{folder}:{}", g + 1), *on);
            }
        }
        let personal = s.add_folder_at(Some(1), None, "Personal", t);
        let tax = s.add_folder_at(Some(1), Some(personal), "Tax", t);
        let scans = s.add_folder_at(Some(1), Some(kyc), "Scans", t);
        let corr = s.add_folder_at(Some(2), None, "Correspondence", t);
        let letters = s.add_folder_at(Some(2), Some(corr), "2024", t);
        let archive = s.add_folder_at(Some(3), None, "Archive", t);
        let old = s.add_folder_at(Some(3), Some(archive), "Old", t);

        s.add_file_at(
            1,
            Some(contracts),
            "Service agreement",
            "agreement.pdf",
            demo_bytes(51, 250_000),
            t,
        );
        s.add_file_at(
            1,
            Some(kyc),
            "Passport scan.jpg",
            "passport.jpg",
            demo_bytes(52, 400_000),
            t + 1000,
        );
        s.add_file_at(
            1,
            Some(scans),
            "utility-bill.png",
            "bill.png",
            demo_bytes(53, 90_000),
            t + 2000,
        );
        s.add_file_at(
            1,
            Some(y2025),
            "Statement",
            "statement.pdf",
            demo_bytes(54, 30_000),
            t + 3000,
        );
        s.add_file_at(
            1,
            Some(y2025),
            "Statement",
            "statement.pdf",
            demo_bytes(55, 31_000),
            t + 4000,
        );
        s.add_file_at(
            1,
            None,
            "Q1/Q2 report.pdf",
            "report.pdf",
            demo_text("Quarterly report", 200),
            t + 5000,
        );
        let long = format!(
            "{} summary",
            "Client portfolio review with detailed allocation notes".repeat(6)
        );
        s.add_file_at(
            1,
            Some(personal),
            &long,
            "summary.pdf",
            demo_bytes(56, 12_000),
            t + 6000,
        );
        s.add_file_at(
            1,
            Some(tax),
            "tax-2024.pdf",
            "tax.pdf",
            demo_bytes(57, 70_000),
            t + 7000,
        );
        s.add_file_at(
            1,
            None,
            "call recording.mp3",
            "recording.mp3",
            demo_bytes(58, 3 << 20),
            t + 8000,
        );
        s.add_file_at(
            2,
            Some(contracts),
            "Contract.pdf",
            "contract.pdf",
            demo_bytes(61, 150_000),
            t + 9000,
        );
        s.add_file_at(
            2,
            None,
            "notes.txt",
            "notes.txt",
            demo_text("Notes on client 2", 20),
            t + 10_000,
        );
        s.add_file_at(
            2,
            Some(corr),
            "letter.docx",
            "letter.docx",
            demo_bytes(62, 25_000),
            t + 11_000,
        );
        s.add_file_at(
            2,
            Some(letters),
            "Reply",
            "reply.pdf",
            demo_text("Reply to client 2", 40),
            t + 11_500,
        );
        s.add_file_at(
            3,
            Some(old),
            "old.pdf",
            "old.pdf",
            demo_bytes(63, 5_000),
            t + 12_000,
        );
        s.add_file_at(
            3,
            None,
            "readme.txt",
            "readme.txt",
            b"r\n".to_vec(),
            t + 13_000,
        );
        s.add_file_at(
            3,
            None,
            "Invoice.pdf",
            "invoice.pdf",
            demo_bytes(64, 20_000),
            t + 14_000,
        );
        s.add_file_at(
            3,
            None,
            "Invoice.pdf",
            "invoice.pdf",
            demo_bytes(65, 21_000),
            t + 15_000,
        );
        s
    }

    /// Adds a client id: its files and folders become reachable (tests).
    pub fn add_client(&mut self, client: u64) {
        self.clients.insert(client);
    }

    /// Adds a folder now (tests); `client: None` adds a shared one. Returns
    /// its id, from the one id space of shared and client folders.
    pub fn add_folder(&mut self, client: Option<u64>, parent: Option<u64>, name: &str) -> u64 {
        self.add_folder_at(client, parent, name, now_ms())
    }

    /// Adds a folder created at `ms` (Unix milliseconds).
    pub fn add_folder_at(
        &mut self,
        client: Option<u64>,
        parent: Option<u64>,
        name: &str,
        ms: i64,
    ) -> u64 {
        let id = self.next_folder;
        self.next_folder += 1;
        self.folders.insert(
            id,
            Folder {
                id,
                name: name.into(),
                client,
                parent,
                created: ms,
                updated: ms,
            },
        );
        id
    }

    /// Uploads a client file now (tests), as the API would: the stored path
    /// takes the extension of `filename`. Returns its id.
    pub fn add_file(
        &mut self,
        client: u64,
        dir: Option<u64>,
        caption: &str,
        filename: &str,
        bytes: impl Into<Bytes>,
    ) -> u64 {
        self.add_file_at(client, dir, caption, filename, bytes, now_ms())
    }

    /// Adds a client file uploaded at `ms` (Unix milliseconds): stored path
    /// `y/<epoch seconds>_<filename, sanitised>`.
    pub fn add_file_at(
        &mut self,
        client: u64,
        dir: Option<u64>,
        caption: &str,
        filename: &str,
        bytes: impl Into<Bytes>,
        ms: i64,
    ) -> u64 {
        let bytes = bytes.into();
        let id = self.next_file;
        self.next_file += 1;
        let clean: String = filename
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let file = format!("y/{}_{clean}", ms / 1000);
        self.files.insert(
            id,
            ClientFile {
                id,
                client,
                caption: caption.into(),
                file,
                directory: dir,
                priority: id,
                bytes,
                uploaded: ms,
            },
        );
        id
    }

    /// Bytes of a client file (tests).
    pub fn bytes(&self, id: u64) -> Option<&[u8]> {
        self.files.get(&id).map(|f| f.bytes.as_ref())
    }

    /// A folder a client's file or folder may sit in: shared or its own.
    fn usable_folder(&self, client: u64, id: u64) -> bool {
        self.folders
            .get(&id)
            .is_some_and(|f| f.client.is_none() || f.client == Some(client))
    }

    fn file_json(f: &ClientFile) -> Value {
        json!({"id": f.id, "name": f.caption, "clientId": f.client, "file": f.file, "directoryId": f.directory, "priority": f.priority})
    }

    fn client_folder_json(f: &Folder) -> Value {
        json!({"id": f.id, "name": f.name, "clientId": f.client, "directoryId": f.parent, "treeFolderId": null})
    }

    fn shared_folder_json(f: &Folder) -> Value {
        json!({"id": f.id, "name": f.name, "directoryId": f.parent, "createdAt": iso(f.created), "updatedAt": iso(f.updated)})
    }
}

type ApiResult = Result<Response, Response>;

fn authorize(emu: &Emu, headers: &HeaderMap) -> Result<(), Response> {
    if bearer_ok(headers, &emu.creds.backoffice_token) {
        Ok(())
    } else {
        Err(json_error(StatusCode::UNAUTHORIZED, "Unauthorized"))
    }
}

fn not_found(what: &str) -> Response {
    json_error(StatusCode::NOT_FOUND, format!("{what} not found"))
}

fn unprocessable(msg: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"message": "Validation failed", "errors": [msg]})),
    )
        .into_response()
}

fn check_client(st: &BackofficeState, client: u64) -> Result<(), Response> {
    if st.clients.contains(&client) {
        Ok(())
    } else {
        Err(not_found("client"))
    }
}

/// A JSON request body, parsed after the token check (a strict server
/// answers 401 before it looks at the body): 400 when it is missing or not
/// JSON, 422 when a field has the wrong type.
fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    if body.is_empty() {
        return Err(json_error(
            StatusCode::BAD_REQUEST,
            "a JSON body is required",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            unprocessable(&e.to_string())
        } else {
            json_error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}"))
        }
    })
}

/// `limit`, `offset`, `filter[field]=value` from the raw query string.
struct ListParams {
    limit: usize,
    offset: usize,
    filters: BTreeMap<String, String>,
}

fn params(raw: Option<String>) -> Result<ListParams, Response> {
    let mut p = ListParams {
        limit: 20,
        offset: 0,
        filters: BTreeMap::new(),
    };
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "limit" => {
                p.limit = v
                    .parse()
                    .map_err(|_| json_error(StatusCode::BAD_REQUEST, "limit must be a number"))?
            }
            "offset" => {
                p.offset = v
                    .parse()
                    .map_err(|_| json_error(StatusCode::BAD_REQUEST, "offset must be a number"))?
            }
            k if k.starts_with("filter[") && k.ends_with(']') => {
                p.filters
                    .insert(k[7..k.len() - 1].to_string(), v.into_owned());
            }
            _ => {}
        }
    }
    if p.limit == 0 || p.limit > 1000 {
        return Err(json_error(
            StatusCode::BAD_REQUEST,
            "limit must be between 1 and 1000",
        ));
    }
    Ok(p)
}

fn page(items: Vec<Value>, p: &ListParams) -> Response {
    let total = items.len();
    let data: Vec<Value> = items.into_iter().skip(p.offset).take(p.limit).collect();
    Json(json!({"total": total, "data": data})).into_response()
}

pub fn routes() -> Router<Emu> {
    Router::new()
        .route(
            "/api/v2/clients/{client}/files",
            get(list_files).post(upload_file),
        )
        .route(
            "/api/v2/clients/{client}/files/{id}",
            axum::routing::put(update_file)
                .patch(update_file)
                .delete(delete_file),
        )
        .route(
            "/api/v2/clients/{client}/files/{id}/download",
            get(download),
        )
        .route(
            "/api/v2/clients/{client}/folders",
            get(list_client_folders).post(create_client_folder),
        )
        .route(
            "/api/v2/clients/{client}/folders/{id}",
            axum::routing::put(rename_client_folder)
                .patch(rename_client_folder)
                .delete(delete_client_folder),
        )
        .route(
            "/api/v2/clients/{client}/folder/{id}",
            axum::routing::put(rename_client_folder)
                .patch(rename_client_folder)
                .delete(delete_client_folder),
        )
        .route("/api/v2/folders", get(list_shared).post(add_shared))
        .route(
            "/api/v2/folders/{id}",
            get(get_shared).put(rename_shared).patch(rename_shared),
        )
        .route(
            "/api/v2/folders/{id}/addSubdirectory",
            post(add_subdirectory),
        )
        .route("/api/v2/folders/{id}/groups", get(groups))
        .route(
            "/api/v2/folders/{id}/groups/{group}",
            axum::routing::put(toggle_group).patch(toggle_group),
        )
}

async fn list_files(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path(client): Path<u64>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let p = params(q)?;
    let st = emu.backoffice.lock();
    check_client(&st, client)?;
    let dir = match p.filters.get("directoryId").map(String::as_str) {
        None => None,
        Some("" | "null") => Some(None),
        Some(v) => Some(Some(v.parse::<u64>().map_err(|_| {
            json_error(StatusCode::BAD_REQUEST, "directoryId must be a number")
        })?)),
    };
    let items = st
        .files
        .values()
        .filter(|f| f.client == client && dir.is_none_or(|d| f.directory == d))
        .map(BackofficeState::file_json)
        .collect();
    Ok(page(items, &p))
}

async fn upload_file(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path(client): Path<u64>,
    req: Request,
) -> ApiResult {
    authorize(&emu, &headers)?;
    check_client(&emu.backoffice.lock(), client)?;
    let mut form = Multipart::from_request(req, &emu)
        .await
        .map_err(IntoResponse::into_response)?;
    let (mut caption, mut dir, mut file) = (None, None, None);
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| json_error(StatusCode::BAD_REQUEST, e.to_string()))?
    {
        match field.name().unwrap_or("") {
            "file" => {
                let name = field.file_name().unwrap_or("file").to_string();
                let data = field
                    .bytes()
                    .await
                    .map_err(|e| json_error(StatusCode::BAD_REQUEST, e.to_string()))?;
                file = Some((name, data));
            }
            "caption" => {
                caption = Some(
                    field
                        .text()
                        .await
                        .map_err(|e| json_error(StatusCode::BAD_REQUEST, e.to_string()))?,
                )
            }
            "directoryId" => {
                dir = Some(
                    field
                        .text()
                        .await
                        .map_err(|e| json_error(StatusCode::BAD_REQUEST, e.to_string()))?,
                )
            }
            _ => {}
        }
    }
    let (filename, data) = file.ok_or_else(|| unprocessable("file is required"))?;
    let caption = caption
        .filter(|c| !c.is_empty())
        .ok_or_else(|| unprocessable("caption is required"))?;
    let dir = match dir.as_deref().map(str::trim) {
        None | Some("") | Some("null") => None,
        Some(d) => Some(
            d.parse::<u64>()
                .map_err(|_| unprocessable("directoryId must be a number"))?,
        ),
    };
    let mut st = emu.backoffice.lock();
    if let Some(d) = dir {
        if !st.usable_folder(client, d) {
            return Err(not_found("folder"));
        }
    }
    let id = st.add_file(client, dir, &caption, &filename, data);
    let body = BackofficeState::file_json(&st.files[&id]);
    drop(st);
    emu.persist();
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Debug, Deserialize)]
struct FileUpdate {
    caption: Option<String>,
    #[serde(default, rename = "directoryId", deserialize_with = "double_option")]
    directory: Option<Option<u64>>,
}

/// Tells a missing field from an explicit `null`.
fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Ok(Some(Option::<u64>::deserialize(d)?))
}

async fn update_file(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path((client, id)): Path<(u64, u64)>,
    body: Bytes,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let body: FileUpdate = json_body(&body)?;
    let mut st = emu.backoffice.lock();
    check_client(&st, client)?;
    if st.files.get(&id).is_none_or(|f| f.client != client) {
        return Err(not_found("file"));
    }
    if let Some(Some(d)) = body.directory {
        if !st.usable_folder(client, d) {
            return Err(not_found("folder"));
        }
    }
    if body.caption.as_deref() == Some("") {
        return Err(unprocessable("caption must not be empty"));
    }
    let f = st.files.get_mut(&id).expect("checked");
    if let Some(c) = body.caption {
        f.caption = c;
    }
    if let Some(d) = body.directory {
        f.directory = d;
    }
    let out = BackofficeState::file_json(f);
    drop(st);
    emu.persist();
    Ok(Json(out).into_response())
}

async fn delete_file(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path((client, id)): Path<(u64, u64)>,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let mut st = emu.backoffice.lock();
    check_client(&st, client)?;
    if st.files.get(&id).is_none_or(|f| f.client != client) {
        return Err(not_found("file"));
    }
    st.files.remove(&id);
    drop(st);
    emu.persist();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn download(
    State(emu): State<Emu>,
    method: Method,
    headers: HeaderMap,
    Path((client, id)): Path<(u64, u64)>,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let st = emu.backoffice.lock();
    let f = st
        .files
        .get(&id)
        .filter(|f| f.client == client)
        .ok_or_else(|| not_found("file"))?;
    let modified = UNIX_EPOCH + Duration::from_millis(f.uploaded.max(0) as u64);
    let ct = if f.file.ends_with(".pdf") {
        "application/pdf"
    } else {
        "application/octet-stream"
    };
    Ok(content::serve(
        &emu,
        &method,
        &headers,
        f.bytes.clone(),
        modified,
        ct,
    ))
}

async fn list_client_folders(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path(client): Path<u64>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let p = params(q.or(Some("limit=1000".into())))?;
    let st = emu.backoffice.lock();
    check_client(&st, client)?;
    let items = st
        .folders
        .values()
        .filter(|f| f.client == Some(client))
        .map(BackofficeState::client_folder_json)
        .collect();
    Ok(page(items, &p))
}

#[derive(Debug, Deserialize)]
struct FolderBody {
    caption: Option<String>,
    #[serde(rename = "directoryId")]
    directory: Option<u64>,
}

async fn create_client_folder(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path(client): Path<u64>,
    body: Bytes,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let body: FolderBody = json_body(&body)?;
    let mut st = emu.backoffice.lock();
    check_client(&st, client)?;
    let caption = body
        .caption
        .filter(|c| !c.is_empty())
        .ok_or_else(|| unprocessable("caption is required"))?;
    if let Some(d) = body.directory {
        if !st.usable_folder(client, d) {
            return Err(not_found("folder"));
        }
    }
    let id = st.add_folder(Some(client), body.directory, &caption);
    let out = BackofficeState::client_folder_json(&st.folders[&id]);
    drop(st);
    emu.persist();
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

async fn rename_client_folder(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path((client, id)): Path<(u64, u64)>,
    body: Bytes,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let body: FolderBody = json_body(&body)?;
    let mut st = emu.backoffice.lock();
    check_client(&st, client)?;
    let caption = body
        .caption
        .filter(|c| !c.is_empty())
        .ok_or_else(|| unprocessable("caption is required"))?;
    let f = st
        .folders
        .get_mut(&id)
        .filter(|f| f.client == Some(client))
        .ok_or_else(|| not_found("folder"))?;
    f.name = caption;
    f.updated = now_ms();
    let out = BackofficeState::client_folder_json(f);
    drop(st);
    emu.persist();
    Ok(Json(out).into_response())
}

async fn delete_client_folder(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path((client, id)): Path<(u64, u64)>,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let mut st = emu.backoffice.lock();
    check_client(&st, client)?;
    if st.folders.get(&id).is_none_or(|f| f.client != Some(client)) {
        return Err(not_found("folder"));
    }
    let busy = st
        .files
        .values()
        .any(|f| f.client == client && f.directory == Some(id))
        || st.folders.values().any(|f| f.parent == Some(id));
    if busy {
        return Err(json_error(StatusCode::CONFLICT, "the folder is not empty"));
    }
    st.folders.remove(&id);
    drop(st);
    emu.persist();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_shared(
    State(emu): State<Emu>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let p = params(q)?;
    let st = emu.backoffice.lock();
    let items = st
        .folders
        .values()
        .filter(|f| f.client.is_none())
        .map(BackofficeState::shared_folder_json)
        .collect();
    Ok(page(items, &p))
}

fn shared(st: &BackofficeState, id: u64) -> Result<&Folder, Response> {
    st.folders
        .get(&id)
        .filter(|f| f.client.is_none())
        .ok_or_else(|| not_found("folder"))
}

async fn get_shared(State(emu): State<Emu>, headers: HeaderMap, Path(id): Path<u64>) -> ApiResult {
    authorize(&emu, &headers)?;
    let st = emu.backoffice.lock();
    Ok(Json(BackofficeState::shared_folder_json(shared(&st, id)?)).into_response())
}

#[derive(Debug, Deserialize)]
struct NameBody {
    name: Option<String>,
}

async fn add_shared(State(emu): State<Emu>, headers: HeaderMap, body: Bytes) -> ApiResult {
    authorize(&emu, &headers)?;
    let name = json_body::<NameBody>(&body)?
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| unprocessable("name is required"))?;
    let mut st = emu.backoffice.lock();
    let id = st.add_folder(None, None, &name);
    let out = BackofficeState::shared_folder_json(&st.folders[&id]);
    drop(st);
    emu.persist();
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

async fn add_subdirectory(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    body: Bytes,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let name = json_body::<NameBody>(&body)?
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| unprocessable("name is required"))?;
    let mut st = emu.backoffice.lock();
    shared(&st, id)?;
    st.add_folder(None, Some(id), &name);
    drop(st);
    emu.persist();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn rename_shared(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    body: Bytes,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let name = json_body::<NameBody>(&body)?
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| unprocessable("name is required"))?;
    let mut st = emu.backoffice.lock();
    shared(&st, id)?;
    let f = st.folders.get_mut(&id).expect("checked");
    f.name = name;
    f.updated = now_ms();
    drop(st);
    emu.persist();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn groups(State(emu): State<Emu>, headers: HeaderMap, Path(id): Path<u64>) -> ApiResult {
    authorize(&emu, &headers)?;
    let st = emu.backoffice.lock();
    shared(&st, id)?;
    let data: Vec<Value> = st
        .groups
        .iter()
        .map(|g| json!({"id": g.id, "caption": g.caption, "enabled": st.permissions.get(&format!("{id}:{}", g.id)).copied().unwrap_or(false)}))
        .collect();
    Ok(Json(json!({"total": data.len(), "data": data})).into_response())
}

/// Flips one group's access: not idempotent, as the seed says.
async fn toggle_group(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path((id, group)): Path<(u64, u64)>,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let mut st = emu.backoffice.lock();
    shared(&st, id)?;
    if !st.groups.iter().any(|g| g.id == group) {
        return Err(not_found("group"));
    }
    let key = format!("{id}:{group}");
    let new = !st.permissions.get(&key).copied().unwrap_or(false);
    st.permissions.insert(key, new);
    drop(st);
    emu.persist();
    Ok(Json(json!({ "status": new })).into_response())
}
