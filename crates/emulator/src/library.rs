//! Emulator of the file-library API (API-CONTRACT.md §2): the signed
//! session-token flow, the flat `GET /files` list, folder create and
//! whole-object updates through `POST /files`, multipart uploads, deletes,
//! private and public downloads, and deleted items still listed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{content, demo_bytes, demo_text, hexbytes, json_error, Emu};
use super::{host, now_ms};

/// One library item: the file object as the API shows it, and its bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub object: Map<String, Value>,
    #[serde(with = "hexbytes")]
    pub bytes: Bytes,
}

impl Item {
    fn uuid(&self) -> &str {
        self.object
            .get("fileLibraryUUID")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    fn name(&self) -> &str {
        self.object
            .get("fileName")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    fn parent(&self) -> Option<&str> {
        self.object
            .get("parentFileLibraryUUID")
            .and_then(Value::as_str)
    }
    fn is_folder(&self) -> bool {
        self.object.get("fileLibraryType").and_then(Value::as_str) == Some("FOLDER")
    }
    fn deleted(&self) -> bool {
        self.object.get("deleted").and_then(Value::as_bool) == Some(true)
    }
    fn public(&self) -> bool {
        self.object.get("publicVisible").and_then(Value::as_bool) == Some(true)
    }
}

/// The library state. In this crate `items` changes only through `put`,
/// `edit` and `remove_item`, which keep the folder index in step; the map
/// is public for reading (a change made to it directly is not seen by an
/// index already built).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct LibraryState {
    /// By fileLibraryUUID.
    pub items: BTreeMap<String, Item>,
    /// Session tokens issued and still valid.
    pub sessions: BTreeSet<String>,
    pub next: u64,
    /// Not serialised: built from `items` on first use (after a load or a
    /// reset), then updated by every change.
    #[serde(skip)]
    children: OnceLock<Children>,
}

/// Every item as (its parent, its key in `items`): a folder's children are
/// one range, in the key order the full list has, so listing a folder or
/// checking a name in it walks that folder only (`None`: the root).
type Children = BTreeSet<(Option<String>, String)>;

fn filing(key: &str, item: &Item) -> (Option<String>, String) {
    (item.parent().map(str::to_string), key.to_string())
}

fn ext(name: &str) -> Option<&str> {
    name.rfind('.').filter(|i| *i > 0).map(|i| &name[i + 1..])
}

fn content_type(name: &str) -> &'static str {
    match ext(name).map(str::to_ascii_lowercase).as_deref() {
        Some("pdf") => "application/pdf",
        Some("txt") => "text/plain",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        _ => "application/octet-stream",
    }
}

impl LibraryState {
    pub fn empty() -> Self {
        LibraryState {
            next: 1,
            ..Default::default()
        }
    }

    /// Nested folders, public and private files, a deleted item, sizes from
    /// one byte to 2 MiB and a name over 255 bytes.
    pub fn demo() -> Self {
        let mut s = Self::empty();
        let base = 1_690_000_000_000i64;
        let marketing = s.add(None, "Marketing", true, Vec::new(), false, base);
        let brochures = s.add(
            Some(&marketing),
            "Brochures",
            true,
            Vec::new(),
            false,
            base + 1000,
        );
        let y2025 = s.add(
            Some(&brochures),
            "2025",
            true,
            Vec::new(),
            false,
            base + 2000,
        );
        let policies = s.add(None, "Policies", true, Vec::new(), false, base + 3000);
        s.add(
            None,
            "Company Profile.pdf",
            false,
            demo_bytes(41, 500_000),
            true,
            base + 10_000,
        );
        s.add(
            None,
            "price-list.xlsx",
            false,
            demo_bytes(42, 80_000),
            false,
            base + 20_000,
        );
        s.add(None, "tiny.txt", false, b"x".to_vec(), false, base + 25_000);
        s.add(
            Some(&marketing),
            "logo.svg",
            false,
            demo_text("<svg/>", 100),
            true,
            base + 30_000,
        );
        s.add(
            Some(&brochures),
            "Spring Brochure.pdf",
            false,
            demo_bytes(43, 2 << 20),
            false,
            base + 40_000,
        );
        s.add(
            Some(&y2025),
            "plan.txt",
            false,
            demo_text("The 2025 plan", 30),
            false,
            base + 50_000,
        );
        s.add(
            Some(&policies),
            "Privacy Policy.pdf",
            false,
            demo_bytes(44, 150_000),
            true,
            base + 60_000,
        );
        s.add(
            Some(&policies),
            "Employee Policy.docx",
            false,
            demo_bytes(45, 70_000),
            false,
            base + 70_000,
        );
        let long = format!(
            "{} policy.pdf",
            "A very long policy document name that goes on".repeat(6)
        );
        s.add(
            Some(&policies),
            &long,
            false,
            demo_bytes(46, 9_000),
            false,
            base + 80_000,
        );
        let old = s.add(
            None,
            "Old Price List.xlsx",
            false,
            demo_bytes(47, 60_000),
            false,
            base + 90_000,
        );
        s.edit(&old, |i| i.object.insert("deleted".into(), json!(true)));
        s
    }

    fn new_uuid(&mut self) -> String {
        let n = self.next;
        self.next += 1;
        format!(
            "{:08x}-{:04x}-4{:03x}-8000-{:012x}",
            0x5eed_0000u32 + n as u32,
            n % 0xffff,
            n % 0xfff,
            n
        )
    }

    /// Adds an item (tests); returns its uuid.
    pub fn add(
        &mut self,
        parent: Option<&str>,
        name: &str,
        folder: bool,
        bytes: impl Into<Bytes>,
        public: bool,
        ms: i64,
    ) -> String {
        let bytes: Bytes = bytes.into();
        let uuid = self.new_uuid();
        let mut o = Map::new();
        o.insert("businessId".into(), json!(1));
        o.insert("fileLibraryUUID".into(), json!(uuid));
        o.insert("fileName".into(), json!(name));
        o.insert(
            "fileLibraryType".into(),
            json!(if folder {
                "FOLDER"
            } else if public {
                "ASSET"
            } else {
                "FILE"
            }),
        );
        if let Some(p) = parent {
            o.insert("parentFileLibraryUUID".into(), json!(p));
        }
        o.insert("createdDate".into(), json!(ms));
        o.insert("modifiedDate".into(), json!(ms));
        o.insert("createdUser".into(), json!("demo"));
        o.insert("modifiedUser".into(), json!("demo"));
        o.insert("deleted".into(), json!(false));
        o.insert("encrypted".into(), json!(false));
        if !folder {
            o.insert("fileSize".into(), json!(bytes.len()));
            if let Some(e) = ext(name) {
                o.insert("extension".into(), json!(e));
            }
            o.insert("contentType".into(), json!(content_type(name)));
            o.insert("publicVisible".into(), json!(public));
            o.insert(
                "s3Bucket".into(),
                json!(if public {
                    "tt-client-public"
                } else {
                    "tt-client-private"
                }),
            );
            o.insert("s3Key".into(), json!(format!("1/{uuid}/{name}")));
        }
        self.put(uuid.clone(), Item { object: o, bytes });
        uuid
    }

    /// Stores `item` under `key` (a new item, or one replaced whole).
    fn put(&mut self, key: String, item: Item) {
        if let Some(ix) = self.children.get_mut() {
            if let Some(old) = self.items.get(&key) {
                ix.remove(&filing(&key, old));
            }
            ix.insert(filing(&key, &item));
        }
        self.items.insert(key, item);
    }

    /// Changes item `key` through `change` (`None` when there is no such
    /// item), refiling it in the index if its parent changed.
    fn edit<T>(&mut self, key: &str, change: impl FnOnce(&mut Item) -> T) -> Option<T> {
        let item = self.items.get_mut(key)?;
        let before = filing(key, item);
        let out = change(item);
        let after = filing(key, item);
        if let Some(ix) = self.children.get_mut().filter(|_| after != before) {
            ix.remove(&before);
            ix.insert(after);
        }
        Some(out)
    }

    fn remove_item(&mut self, key: &str) -> Option<Item> {
        let item = self.items.remove(key)?;
        if let Some(ix) = self.children.get_mut() {
            ix.remove(&filing(key, &item));
        }
        Some(item)
    }

    /// The folder index, built from `items` the first time it is needed.
    fn index(&self) -> &Children {
        self.children.get_or_init(|| {
            self.items
                .iter()
                .map(|(key, item)| filing(key, item))
                .collect()
        })
    }

    /// The items in `parent` (`None`: at the root) with their keys, in key
    /// order: O(log n) to reach, then O(1) each.
    fn children<'a>(
        &'a self,
        parent: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a String, &'a Item)> + 'a {
        self.index()
            .range((parent.map(str::to_string), String::new())..)
            .take_while(move |(p, _)| p.as_deref() == parent)
            .map(|(_, key)| (key, &self.items[key]))
    }

    /// Bytes of an item (tests).
    pub fn bytes(&self, uuid: &str) -> Option<&[u8]> {
        self.items.get(uuid).map(|i| i.bytes.as_ref())
    }

    /// Invalidates every session token, so the next call gets a 401.
    pub fn expire_sessions(&mut self) {
        self.sessions.clear();
    }

    fn view(&self, item: &Item, host: &str) -> Value {
        let mut o = item.object.clone();
        if item.public() && !item.is_folder() {
            o.insert(
                "url".into(),
                json!(format!(
                    "http://{host}/library/live/public/{}/{}",
                    item.uuid(),
                    urlencode(item.name())
                )),
            );
        }
        Value::Object(o)
    }

    fn live_sibling(&self, parent: Option<&str>, name: &str, except: &str) -> bool {
        self.children(parent)
            .any(|(_, i)| !i.deleted() && i.name() == name && i.uuid() != except)
    }

    /// Deletes `uuid` and everything under it. The item goes before its
    /// children, so a folder moved into its own subtree (a cycle) ends the
    /// walk instead of recursing forever.
    fn remove_tree(&mut self, uuid: &str) {
        let children: Vec<String> = self.children(Some(uuid)).map(|(k, _)| k.clone()).collect();
        self.remove_item(uuid);
        for c in children {
            self.remove_tree(&c);
        }
    }
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

type ApiResult = Result<Response, Response>;

fn authorize(emu: &Emu, headers: &HeaderMap) -> Result<(), Response> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token {
        Some(t) if emu.library.lock().sessions.contains(t) => Ok(()),
        _ => Err(json_error(
            StatusCode::UNAUTHORIZED,
            "invalid or expired session token",
        )),
    }
}

pub fn routes() -> Router<Emu> {
    Router::new()
        .route("/sessionToken", get(session_token))
        .route("/files", get(list).post(create_or_update))
        .route("/files/{uuid}", delete(remove))
        .route("/files/{uuid}/content", get(private_content))
        .route("/public/{uuid}/{name}", get(public_content))
        .route("/businessWeb/fileUploadS3.do", post(upload))
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    #[serde(rename = "apiKey")]
    api_key: Option<String>,
    timestamp: Option<String>,
    signature: Option<String>,
}

async fn session_token(State(emu): State<Emu>, Query(q): Query<TokenQuery>) -> ApiResult {
    let (Some(key), Some(ts), Some(sig)) = (q.api_key, q.timestamp, q.signature) else {
        return Err(json_error(
            StatusCode::BAD_REQUEST,
            "apiKey, timestamp and signature are required",
        ));
    };
    if ts.parse::<u64>().is_err() {
        return Err(json_error(
            StatusCode::BAD_REQUEST,
            "timestamp must be unix seconds",
        ));
    }
    let expected = hex::encode(Md5::digest(format!(
        "{}{}",
        emu.creds.library_api_key, emu.creds.library_private_key
    )));
    if key != emu.creds.library_api_key || !sig.eq_ignore_ascii_case(&expected) {
        return Err(json_error(
            StatusCode::UNAUTHORIZED,
            "bad apiKey or signature",
        ));
    }
    let token = format!("st-{:032x}", rand::random::<u128>());
    emu.library.lock().sessions.insert(token.clone());
    Ok(Json(json!({ "sessionToken": token })).into_response())
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(rename = "parentFileLibraryUUID")]
    parent: Option<String>,
    #[serde(rename = "fileLibraryType")]
    kind: Option<String>,
}

async fn list(State(emu): State<Emu>, headers: HeaderMap, Query(q): Query<ListQuery>) -> ApiResult {
    authorize(&emu, &headers)?;
    let st = emu.library.lock();
    if let Some(p) = &q.parent {
        if !st.items.get(p).is_some_and(Item::is_folder) {
            return Err(json_error(StatusCode::NOT_FOUND, format!("no folder {p}")));
        }
    }
    Ok(Json(listed(&st, &q, &host(&headers))).into_response())
}

/// A folder's children from the index (O(log n + children)), or every item
/// when no folder is named (the answer is that long anyway); the type
/// filter then applies to those.
fn listed(st: &LibraryState, q: &ListQuery, host: &str) -> Value {
    let kind = |i: &Item| {
        q.kind
            .as_deref()
            .is_none_or(|k| i.object.get("fileLibraryType").and_then(Value::as_str) == Some(k))
    };
    let out: Vec<Value> = match q.parent.as_deref() {
        Some(p) => st
            .children(Some(p))
            .filter(|(_, i)| kind(i))
            .map(|(_, i)| st.view(i, host))
            .collect(),
        None => st
            .items
            .values()
            .filter(|i| kind(i))
            .map(|i| st.view(i, host))
            .collect(),
    };
    Value::Array(out)
}

/// `POST /files`: creates a folder, or updates the whole object named by
/// its `fileLibraryUUID` (rename, move).
async fn create_or_update(
    State(emu): State<Emu>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let Some(Json(Value::Object(body))) = body else {
        return Err(json_error(
            StatusCode::BAD_REQUEST,
            "a JSON file object is required",
        ));
    };
    let bad = |m: &str| json_error(StatusCode::UNPROCESSABLE_ENTITY, m.to_string());
    let business = body.get("businessId").and_then(|v| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    });
    let Some(business) = business else {
        return Err(bad("businessId is required"));
    };
    if business != emu.creds.library_business_id {
        return Err(json_error(
            StatusCode::FORBIDDEN,
            "businessId does not match the session",
        ));
    }
    let kind = body
        .get("fileLibraryType")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("fileLibraryType is required"))?
        .to_string();
    let name = body
        .get("fileName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("fileName is required"))?
        .to_string();
    let parent = body
        .get("parentFileLibraryUUID")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(str::to_string);
    let host = host(&headers);
    let mut st = emu.library.lock();
    if let Some(p) = &parent {
        if !st
            .items
            .get(p)
            .is_some_and(|i| i.is_folder() && !i.deleted())
        {
            return Err(json_error(StatusCode::NOT_FOUND, format!("no folder {p}")));
        }
    }
    let uuid = body
        .get("fileLibraryUUID")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .map(str::to_string);
    let now = now_ms();
    let result = match uuid {
        Some(u) => {
            let item = st
                .items
                .get(&u)
                .ok_or_else(|| json_error(StatusCode::NOT_FOUND, format!("no item {u}")))?;
            if item.deleted() {
                return Err(json_error(
                    StatusCode::NOT_FOUND,
                    format!("item {u} is deleted"),
                ));
            }
            if parent.as_deref() == Some(u.as_str()) {
                return Err(bad("an item cannot be its own parent"));
            }
            if st.live_sibling(parent.as_deref(), &name, &u) {
                return Err(json_error(
                    StatusCode::CONFLICT,
                    format!("{name:?} already exists in that folder"),
                ));
            }
            st.edit(&u, |item| {
                item.object.insert("fileName".into(), json!(name));
                match &parent {
                    Some(p) => item.object.insert("parentFileLibraryUUID".into(), json!(p)),
                    None => item.object.remove("parentFileLibraryUUID"),
                };
                item.object.insert("modifiedDate".into(), json!(now));
            });
            u
        }
        None => {
            if kind != "FOLDER" {
                return Err(bad(
                    "only folders are created here; upload files with fileUploadS3.do",
                ));
            }
            if st.live_sibling(parent.as_deref(), &name, "") {
                return Err(json_error(
                    StatusCode::CONFLICT,
                    format!("{name:?} already exists in that folder"),
                ));
            }
            st.add(parent.as_deref(), &name, true, Vec::new(), false, now)
        }
    };
    let view = st.view(&st.items[&result], &host);
    drop(st);
    emu.persist();
    Ok(Json(view).into_response())
}

async fn upload(State(emu): State<Emu>, headers: HeaderMap, mut form: Multipart) -> ApiResult {
    authorize(&emu, &headers)?;
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut file: Option<(String, Bytes)> = None;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| json_error(StatusCode::BAD_REQUEST, e.to_string()))?
    {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            let fname = field.file_name().unwrap_or("upload").to_string();
            let data = field
                .bytes()
                .await
                .map_err(|e| json_error(StatusCode::BAD_REQUEST, e.to_string()))?;
            file = Some((fname, data));
        } else {
            let text = field
                .text()
                .await
                .map_err(|e| json_error(StatusCode::BAD_REQUEST, e.to_string()))?;
            fields.insert(name, text);
        }
    }
    let bad = |m: &str| json_error(StatusCode::UNPROCESSABLE_ENTITY, m.to_string());
    let (fname, data) = file.ok_or_else(|| bad("part 'file' is required"))?;
    let business: u64 = fields
        .get("businessId")
        .and_then(|b| b.parse().ok())
        .ok_or_else(|| bad("businessId is required"))?;
    if business != emu.creds.library_business_id {
        return Err(json_error(
            StatusCode::FORBIDDEN,
            "businessId does not match the session",
        ));
    }
    fields
        .get("userName")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| bad("userName is required"))?;
    let name = fields
        .get("uploadedFileName")
        .filter(|n| !n.is_empty())
        .cloned()
        .unwrap_or(fname);
    let public = fields.get("fileLibraryType").map(String::as_str) == Some("ASSET");
    let parent = fields
        .get("parentFileLibraryUUID")
        .filter(|p| !p.is_empty())
        .cloned();
    let host = host(&headers);
    let mut st = emu.library.lock();
    if let Some(p) = &parent {
        if !st
            .items
            .get(p)
            .is_some_and(|i| i.is_folder() && !i.deleted())
        {
            return Err(json_error(StatusCode::NOT_FOUND, format!("no folder {p}")));
        }
    }
    // Uploads may repeat a name (the library keeps both).
    let uuid = st.add(parent.as_deref(), &name, false, data, public, now_ms());
    let view = st.view(&st.items[&uuid], &host);
    drop(st);
    emu.persist();
    Ok(Json(view).into_response())
}

async fn remove(State(emu): State<Emu>, headers: HeaderMap, Path(uuid): Path<String>) -> ApiResult {
    authorize(&emu, &headers)?;
    let mut st = emu.library.lock();
    if !st.items.contains_key(&uuid) {
        return Err(json_error(StatusCode::NOT_FOUND, format!("no item {uuid}")));
    }
    st.remove_tree(&uuid);
    drop(st);
    emu.persist();
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn serve(emu: &Emu, method: &Method, headers: &HeaderMap, item: &Item) -> Response {
    let ms = item
        .object
        .get("modifiedDate")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .max(0) as u64;
    let ct = item
        .object
        .get("contentType")
        .and_then(Value::as_str)
        .unwrap_or("application/octet-stream");
    content::serve(
        emu,
        method,
        headers,
        item.bytes.clone(),
        UNIX_EPOCH + Duration::from_millis(ms),
        ct,
    )
}

async fn private_content(
    State(emu): State<Emu>,
    method: Method,
    headers: HeaderMap,
    Path(uuid): Path<String>,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let st = emu.library.lock();
    let item = st
        .items
        .get(&uuid)
        .filter(|i| !i.is_folder())
        .ok_or_else(|| json_error(StatusCode::NOT_FOUND, format!("no file {uuid}")))?;
    Ok(serve(&emu, &method, &headers, item))
}

async fn public_content(
    State(emu): State<Emu>,
    method: Method,
    headers: HeaderMap,
    Path((uuid, _name)): Path<(String, String)>,
) -> ApiResult {
    let st = emu.library.lock();
    let item = st
        .items
        .get(&uuid)
        .filter(|i| !i.is_folder() && i.public())
        .ok_or_else(|| json_error(StatusCode::NOT_FOUND, "no such public file"))?;
    Ok(serve(&emu, &method, &headers, item))
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::seq::IndexedRandom;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// The list as served before the index: every item filtered. The
    /// reference the index must match.
    fn scanned(st: &LibraryState, q: &ListQuery, host: &str) -> Value {
        let out: Vec<Value> = st
            .items
            .values()
            .filter(|i| q.parent.as_deref().is_none_or(|p| i.parent() == Some(p)))
            .filter(|i| {
                q.kind.as_deref().is_none_or(|k| {
                    i.object.get("fileLibraryType").and_then(Value::as_str) == Some(k)
                })
            })
            .map(|i| st.view(i, host))
            .collect();
        Value::Array(out)
    }

    /// `uuid` and every item under it, by a walk that stops at cycles.
    fn subtree(st: &LibraryState, uuid: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::from([uuid.to_string()]);
        let mut todo = vec![uuid.to_string()];
        while let Some(u) = todo.pop() {
            for (k, i) in &st.items {
                if i.parent() == Some(u.as_str()) && seen.insert(k.clone()) {
                    todo.push(k.clone());
                }
            }
        }
        seen
    }

    /// A parent to file an item under: the root, any item (a folder most
    /// of the time), or one that does not exist.
    fn some_parent(st: &LibraryState, rng: &mut StdRng) -> Option<String> {
        let keys: Vec<&String> = st.items.keys().collect();
        match rng.random_range(0..10) {
            0..=2 => None,
            3 => Some("no-such-folder".into()),
            _ => keys.choose(rng).map(|k| k.to_string()),
        }
    }

    /// One random change: a new file or folder, a move (cycles included),
    /// a rename, a delete mark, or a removal of a subtree (checked against
    /// a walk of the whole map).
    fn mutate(st: &mut LibraryState, rng: &mut StdRng) {
        let parent = some_parent(st, rng);
        let name = format!("n{}", rng.random_range(0..6));
        let key = st
            .items
            .keys()
            .collect::<Vec<_>>()
            .choose(rng)
            .map(|k| k.to_string());
        match (rng.random_range(0..8), key) {
            (0 | 1, Some(k)) => st.edit(&k, |i| match &parent {
                Some(p) => i.object.insert("parentFileLibraryUUID".into(), json!(p)),
                None => i.object.remove("parentFileLibraryUUID"),
            }),
            (2, Some(k)) => st.edit(&k, |i| i.object.insert("fileName".into(), json!(name))),
            (3, Some(k)) => st.edit(&k, |i| i.object.insert("deleted".into(), json!(true))),
            (4, Some(k)) => {
                let left: BTreeSet<String> = st.items.keys().cloned().collect();
                let gone = subtree(st, &k);
                st.remove_tree(&k);
                let kept: BTreeSet<String> = st.items.keys().cloned().collect();
                assert_eq!(kept, &left - &gone, "removing {k}");
                None
            }
            _ => {
                let folder = rng.random_bool(0.4);
                st.add(
                    parent.as_deref(),
                    &name,
                    folder,
                    b"x".to_vec(),
                    rng.random(),
                    1,
                );
                None
            }
        };
    }

    /// Folder lists and name checks from the index against the full scan,
    /// after each of a random run of changes made once the index is built.
    #[test]
    fn the_index_lists_what_the_full_scan_lists() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut st = LibraryState::demo();
        st.index();
        for step in 0..2_000 {
            mutate(&mut st, &mut rng);
            for _ in 0..4 {
                let parent = some_parent(&st, &mut rng);
                let kinds = [None, Some("FOLDER"), Some("FILE"), Some("ASSET"), Some("x")];
                let kind = kinds.choose(&mut rng).unwrap().map(str::to_string);
                let q = ListQuery {
                    parent: parent.clone(),
                    kind,
                };
                let fast = listed(&st, &q, "h").to_string();
                assert_eq!(fast, scanned(&st, &q, "h").to_string(), "step {step}");
                let name = format!("n{}", rng.random_range(0..6));
                let except = st.items.keys().next().cloned().unwrap_or_default();
                let full = st.items.values().any(|i| {
                    !i.deleted()
                        && i.parent() == parent.as_deref()
                        && i.name() == name
                        && i.uuid() != except
                });
                assert_eq!(st.live_sibling(parent.as_deref(), &name, &except), full);
            }
        }
    }
}
