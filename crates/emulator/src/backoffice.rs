//! Emulator of the back-office API (API-CONTRACT.md §1): client files and
//! client folders, the folder tree shared by all clients in the same folder-id
//! space, user-group permissions with the non-idempotent toggle, content with
//! `Range`/`HEAD`, `limit`/`offset` paging, Bearer token.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{FromRequest, Multipart, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::ranked::RankedSet;
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

/// The back-office state. In this crate `folders` and `files` change only
/// through `put_*`, `edit_*` and `remove_*`, which keep the list index in
/// step; the maps are public for reading (a change made to them directly
/// is not seen by an index already built).
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
    /// Not serialised: built from the maps on the first list (after a load
    /// or a reset), then updated by every change.
    #[serde(skip)]
    index: OnceLock<ListIndex>,
}

/// The ids each paged list shows, in id order (the lists' order), so a
/// page walks only itself: O(log n) to reach `offset`, then O(limit).
#[derive(Debug, Clone, Default)]
struct ListIndex {
    /// A client's files.
    files: BTreeMap<u64, RankedSet<u64>>,
    /// A client's files in one folder (`None`: at its root).
    files_in: BTreeMap<(u64, Option<u64>), RankedSet<u64>>,
    /// Folders by owner (`None`: the shared tree).
    folders: BTreeMap<Option<u64>, RankedSet<u64>>,
}

/// Where the index files a client file: its client and folder.
type FileFiling = (u64, Option<u64>);

fn filing(f: &ClientFile) -> FileFiling {
    (f.client, f.directory)
}

/// The empty list of an absent key.
static NONE: RankedSet<u64> = RankedSet::new();

impl ListIndex {
    fn build(st: &BackofficeState) -> Self {
        let mut ix = ListIndex::default();
        for f in st.files.values() {
            ix.add_file(f.id, filing(f));
        }
        for f in st.folders.values() {
            ix.add_folder(f.id, f.client);
        }
        ix
    }

    fn add_file(&mut self, id: u64, (client, dir): FileFiling) {
        self.files.entry(client).or_default().insert(id);
        self.files_in.entry((client, dir)).or_default().insert(id);
    }

    fn drop_file(&mut self, id: u64, (client, dir): FileFiling) {
        if let Some(ids) = self.files.get_mut(&client) {
            ids.remove(&id);
        }
        if let Some(ids) = self.files_in.get_mut(&(client, dir)) {
            ids.remove(&id);
        }
    }

    fn add_folder(&mut self, id: u64, owner: Option<u64>) {
        self.folders.entry(owner).or_default().insert(id);
    }

    fn drop_folder(&mut self, id: u64, owner: Option<u64>) {
        if let Some(ids) = self.folders.get_mut(&owner) {
            ids.remove(&id);
        }
    }

    /// A client's files, all of them (`dir: None`) or those of one folder.
    fn files(&self, client: u64, dir: Option<Option<u64>>) -> &RankedSet<u64> {
        let ids = match dir {
            None => self.files.get(&client),
            Some(d) => self.files_in.get(&(client, d)),
        };
        ids.unwrap_or(&NONE)
    }

    fn folders(&self, owner: Option<u64>) -> &RankedSet<u64> {
        self.folders.get(&owner).unwrap_or(&NONE)
    }
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
        self.put_folder(Folder {
            id,
            name: name.into(),
            client,
            parent,
            created: ms,
            updated: ms,
        });
        id
    }

    /// Stores `f` under its id (a new folder, or one replaced whole).
    fn put_folder(&mut self, f: Folder) {
        if let Some(ix) = self.index.get_mut() {
            if let Some(old) = self.folders.get(&f.id) {
                ix.drop_folder(old.id, old.client);
            }
            ix.add_folder(f.id, f.client);
        }
        self.folders.insert(f.id, f);
    }

    /// Changes folder `id` through `change` (`None` when there is no such
    /// folder), refiling it in the index if its owner changed.
    fn edit_folder<T>(&mut self, id: u64, change: impl FnOnce(&mut Folder) -> T) -> Option<T> {
        let f = self.folders.get_mut(&id)?;
        let before = f.client;
        let out = change(f);
        let after = f.client;
        if let Some(ix) = self.index.get_mut().filter(|_| after != before) {
            ix.drop_folder(id, before);
            ix.add_folder(id, after);
        }
        Some(out)
    }

    fn remove_folder(&mut self, id: u64) -> Option<Folder> {
        let f = self.folders.remove(&id)?;
        if let Some(ix) = self.index.get_mut() {
            ix.drop_folder(id, f.client);
        }
        Some(f)
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
        self.put_file(ClientFile {
            id,
            client,
            caption: caption.into(),
            file,
            directory: dir,
            priority: id,
            bytes,
            uploaded: ms,
        });
        id
    }

    /// Stores `f` under its id (a new file, or one replaced whole).
    fn put_file(&mut self, f: ClientFile) {
        if let Some(ix) = self.index.get_mut() {
            if let Some(old) = self.files.get(&f.id) {
                ix.drop_file(old.id, filing(old));
            }
            ix.add_file(f.id, filing(&f));
        }
        self.files.insert(f.id, f);
    }

    /// Changes file `id` through `change` (`None` when there is no such
    /// file), refiling it in the index if its client or folder changed.
    fn edit_file<T>(&mut self, id: u64, change: impl FnOnce(&mut ClientFile) -> T) -> Option<T> {
        let f = self.files.get_mut(&id)?;
        let before = filing(f);
        let out = change(f);
        let after = filing(f);
        if let Some(ix) = self.index.get_mut().filter(|_| after != before) {
            ix.drop_file(id, before);
            ix.add_file(id, after);
        }
        Some(out)
    }

    fn remove_file(&mut self, id: u64) -> Option<ClientFile> {
        let f = self.files.remove(&id)?;
        if let Some(ix) = self.index.get_mut() {
            ix.drop_file(id, filing(&f));
        }
        Some(f)
    }

    /// The list index, built from the maps the first time it is needed.
    fn index(&self) -> &ListIndex {
        self.index.get_or_init(|| ListIndex::build(self))
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

/// One page of an id-ordered list: its `total`, and as `data` the `limit`
/// entries from `offset`, each shown by `show`.
fn page(ids: &RankedSet<u64>, p: &ListParams, show: impl Fn(u64) -> Value) -> Value {
    let data: Vec<Value> = ids
        .iter_from(p.offset)
        .take(p.limit)
        .map(|&id| show(id))
        .collect();
    json!({"total": ids.len(), "data": data})
}

/// A page of a client's files, all of them (`dir: None`) or one folder's.
fn files_page(
    st: &BackofficeState,
    client: u64,
    dir: Option<Option<u64>>,
    p: &ListParams,
) -> Value {
    page(st.index().files(client, dir), p, |id| {
        BackofficeState::file_json(&st.files[&id])
    })
}

/// A page of the folders of a client (`owner: Some`) or of the shared tree.
fn folders_page(st: &BackofficeState, owner: Option<u64>, p: &ListParams) -> Value {
    let show = |id| {
        let f = &st.folders[&id];
        match owner {
            Some(_) => BackofficeState::client_folder_json(f),
            None => BackofficeState::shared_folder_json(f),
        }
    };
    page(st.index().folders(owner), p, show)
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
    Ok(Json(files_page(&st, client, dir, &p)).into_response())
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
    let out = st
        .edit_file(id, |f| {
            if let Some(c) = body.caption {
                f.caption = c;
            }
            if let Some(d) = body.directory {
                f.directory = d;
            }
            BackofficeState::file_json(f)
        })
        .expect("checked");
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
    st.remove_file(id);
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
    Ok(Json(folders_page(&st, Some(client), &p)).into_response())
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
    if st.folders.get(&id).is_none_or(|f| f.client != Some(client)) {
        return Err(not_found("folder"));
    }
    let out = st
        .edit_folder(id, |f| {
            f.name = caption;
            f.updated = now_ms();
            BackofficeState::client_folder_json(f)
        })
        .expect("checked");
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
    let busy = !st.index().files(client, Some(Some(id))).is_empty()
        || st.folders.values().any(|f| f.parent == Some(id));
    if busy {
        return Err(json_error(StatusCode::CONFLICT, "the folder is not empty"));
    }
    st.remove_folder(id);
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
    Ok(Json(folders_page(&st, None, &p)).into_response())
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
    st.edit_folder(id, |f| {
        f.name = name;
        f.updated = now_ms();
    });
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

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::seq::IndexedRandom;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// The lists as served before the index: every file or folder
    /// filtered, shown, then paged. The reference the index must match.
    fn scanned(items: Vec<Value>, p: &ListParams) -> Value {
        let total = items.len();
        let data: Vec<Value> = items.into_iter().skip(p.offset).take(p.limit).collect();
        json!({"total": total, "data": data})
    }

    fn scanned_files(st: &BackofficeState, client: u64, dir: Option<Option<u64>>) -> Vec<Value> {
        st.files
            .values()
            .filter(|f| f.client == client && dir.is_none_or(|d| f.directory == d))
            .map(BackofficeState::file_json)
            .collect()
    }

    fn scanned_folders(st: &BackofficeState, owner: Option<u64>) -> Vec<Value> {
        let json = match owner {
            Some(_) => BackofficeState::client_folder_json,
            None => BackofficeState::shared_folder_json,
        };
        st.folders
            .values()
            .filter(|f| f.client == owner)
            .map(json)
            .collect()
    }

    fn some_folder(st: &BackofficeState, rng: &mut StdRng) -> Option<u64> {
        let ids: Vec<u64> = st.folders.keys().copied().collect();
        ids.choose(rng).copied().filter(|_| rng.random_bool(0.8))
    }

    /// One random change: a new file or folder, a file moved to another
    /// folder or client, a rename, a folder moved to another owner, or a
    /// delete of either.
    fn mutate(st: &mut BackofficeState, rng: &mut StdRng) {
        let client = rng.random_range(1..=4);
        let file = st
            .files
            .keys()
            .copied()
            .collect::<Vec<_>>()
            .choose(rng)
            .copied();
        let folder = some_folder(st, rng);
        match (rng.random_range(0..9), file, folder) {
            (0, Some(id), _) => st.edit_file(id, |f| f.directory = folder).map(drop),
            (1, Some(id), _) => st.edit_file(id, |f| f.client = client).map(drop),
            (2, Some(id), _) => st.edit_file(id, |f| f.caption = "c".into()).map(drop),
            (3, Some(id), _) => st.remove_file(id).map(drop),
            (4, _, Some(id)) => st.edit_folder(id, |f| f.client = Some(client)).map(drop),
            (5, _, Some(id)) => st.remove_folder(id).map(drop),
            (6, _, _) => {
                let owner = Some(client).filter(|_| rng.random());
                st.add_folder_at(owner, folder, "f", 1);
                None
            }
            _ => {
                st.add_file_at(client, folder, "c", "f.pdf", b"x".to_vec(), 1);
                None
            }
        };
    }

    fn random_params(st: &BackofficeState, rng: &mut StdRng) -> ListParams {
        let n = st.files.len().max(st.folders.len()) + 3;
        ListParams {
            limit: *[1, 2, 5, 20, 1000].choose(rng).unwrap(),
            offset: *[0, rng.random_range(0..n), usize::MAX].choose(rng).unwrap(),
            filters: BTreeMap::new(),
        }
    }

    /// The three lists from the index against the full scan, byte for
    /// byte, after each of a random run of changes made once the index is
    /// built.
    #[test]
    fn the_index_lists_what_the_full_scan_lists() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut st = BackofficeState::demo();
        st.index();
        for step in 0..3_000 {
            mutate(&mut st, &mut rng);
            let p = random_params(&st, &mut rng);
            for client in 1..=4 {
                let dirs = [None, Some(None), Some(some_folder(&st, &mut rng))];
                for dir in dirs {
                    let fast = files_page(&st, client, dir, &p).to_string();
                    let full = scanned(scanned_files(&st, client, dir), &p).to_string();
                    assert_eq!(fast, full, "step {step}: files of {client} in {dir:?}");
                }
            }
            for owner in [None, Some(1), Some(2), Some(3), Some(4)] {
                let fast = folders_page(&st, owner, &p).to_string();
                let full = scanned(scanned_folders(&st, owner), &p).to_string();
                assert_eq!(fast, full, "step {step}: folders of {owner:?}");
            }
        }
    }
}
