//! Emulator of the Files-apps API (API-CONTRACT.md §3): blobs, app files with
//! revisions and a trash, attachments of posts, comments and messages, paged
//! lists, RFC 7807 errors, Bearer API key.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::ranked::RankedSet;
use super::{bearer_ok, content, demo_bytes, demo_text, hexbytes, problem, Emu};
use super::{host, iso, now_ms};

/// Hex-encoded bytes in the serialised state (compact, text-safe).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct App {
    pub id: u64,
    pub uid: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Blob {
    pub id: u64,
    pub name: String,
    pub media_type: String,
    #[serde(with = "hexbytes")]
    pub bytes: Bytes,
}

/// One stored revision of a file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Revision {
    pub rev: u64,
    pub media_type: String,
    #[serde(with = "hexbytes")]
    pub bytes: Bytes,
    /// Unix milliseconds.
    pub created: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileRec {
    pub id: u64,
    /// `None` for attachments.
    pub app: Option<u64>,
    pub name: String,
    pub metadata: Map<String, Value>,
    pub tags: Vec<String>,
    pub trashed: bool,
    pub created: i64,
    pub updated: i64,
    /// Oldest first; the last is the current content.
    pub revisions: Vec<Revision>,
}

impl FileRec {
    fn current(&self) -> &Revision {
        self.revisions.last().expect("a file has a revision")
    }
}

/// The Files state. In this crate `files` changes only through `put`,
/// `edit` and `remove_file`, which keep the list index in step; the maps
/// are public for reading (a change made to them directly is not seen by
/// an index already built).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct FilesState {
    pub apps: Vec<App>,
    pub files: BTreeMap<u64, FileRec>,
    pub blobs: BTreeMap<u64, Blob>,
    /// `posts/1` → file ids.
    pub attachments: BTreeMap<String, Vec<u64>>,
    pub next_id: u64,
    pub next_blob: u64,
    /// Not serialised: built from `files` on the first list (after a load
    /// or a reset), then updated by every change.
    #[serde(skip)]
    index: OnceLock<FileIndex>,
}

/// The ids of a set of files in id order, by trashed state, so a default
/// list (`order_by=id`, no `q` or `tag`) walks only its page.
#[derive(Debug, Clone, Default)]
struct ByTrash {
    live: RankedSet<u64>,
    trashed: RankedSet<u64>,
    /// Both, for `trashed=null`: merging the two would cost a walk to `skip`.
    both: RankedSet<u64>,
}

impl ByTrash {
    fn get(&self, trashed: Option<bool>) -> &RankedSet<u64> {
        match trashed {
            Some(false) => &self.live,
            Some(true) => &self.trashed,
            None => &self.both,
        }
    }

    fn insert(&mut self, id: u64, trashed: bool) {
        let side = if trashed {
            &mut self.trashed
        } else {
            &mut self.live
        };
        side.insert(id);
        self.both.insert(id);
    }

    fn remove(&mut self, id: u64, trashed: bool) {
        let side = if trashed {
            &mut self.trashed
        } else {
            &mut self.live
        };
        side.remove(&id);
        self.both.remove(&id);
    }
}

/// Where the index files a file: its app and trashed state.
type Filing = (Option<u64>, bool);

fn filing(f: &FileRec) -> Filing {
    (f.app, f.trashed)
}

/// The default-order index of the app lists and of the list of all files.
#[derive(Debug, Clone, Default)]
struct FileIndex {
    apps: BTreeMap<u64, ByTrash>,
    /// Every file, attachments included (`GET /api/files`).
    all: ByTrash,
}

impl FileIndex {
    fn build(files: &BTreeMap<u64, FileRec>) -> Self {
        let mut ix = FileIndex::default();
        for f in files.values() {
            ix.insert(f.id, filing(f));
        }
        ix
    }

    fn insert(&mut self, id: u64, (app, trashed): Filing) {
        self.all.insert(id, trashed);
        if let Some(a) = app {
            self.apps.entry(a).or_default().insert(id, trashed);
        }
    }

    fn remove(&mut self, id: u64, (app, trashed): Filing) {
        self.all.remove(id, trashed);
        if let Some(a) = app.and_then(|a| self.apps.get_mut(&a)) {
            a.remove(id, trashed);
        }
    }

    /// The ids a default list of `scope` pages through; `None` for a scope
    /// not indexed (attachment lists, a handful of files each).
    fn ids(&self, scope: Scope, trashed: Option<bool>) -> Option<&RankedSet<u64>> {
        static NONE: RankedSet<u64> = RankedSet::new();
        match scope {
            Scope::App(a) => Some(self.apps.get(&a).map_or(&NONE, |b| b.get(trashed))),
            Scope::All => Some(self.all.get(trashed)),
            Scope::Ids(_) => None,
        }
    }
}

fn media_type_of(name: &str) -> &'static str {
    match name
        .rsplit('.')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
        .as_str()
    {
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "md" => "text/markdown",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "mp4" => "video/mp4",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

impl FilesState {
    fn with_apps() -> Self {
        FilesState {
            apps: vec![
                App {
                    id: 1,
                    uid: "handbook".into(),
                    name: "Handbook".into(),
                },
                App {
                    id: 2,
                    uid: "contracts".into(),
                    name: "Contracts".into(),
                },
            ],
            next_id: 1,
            next_blob: 1,
            ..Default::default()
        }
    }

    /// Apps `handbook` (id 1) and `contracts` (id 2), no files.
    pub fn empty() -> Self {
        Self::with_apps()
    }

    /// Files of several sizes, a file with 4 revisions, trashed files, tags
    /// and metadata, names differing only in case, and attachments on post
    /// 1, comment 1 and message 1.
    pub fn demo() -> Self {
        let mut s = Self::with_apps();
        let base = 1_700_000_000_000i64;
        let mut t = 0i64;
        let mut at = || {
            t += 3_600_000;
            base + t
        };
        let hb = Some(1);
        let ct = Some(2);
        s.add_at(
            hb,
            "Welcome.md",
            demo_text("Welcome to the handbook", 40),
            at(),
        );
        let handbook = s.add_at(hb, "Employee Handbook.pdf", demo_bytes(11, 900_000), at());
        for (i, len) in [(12u64, 1_000_000usize), (13, 1_200_000), (14, 1_500_000)] {
            let ms = at();
            s.push_revision(handbook, demo_bytes(i, len), ms);
        }
        let travel = s.add_at(hb, "Travel Policy.docx", demo_bytes(15, 300_000), at());
        s.edit(travel, |f| {
            f.tags = vec!["policy".into(), "travel".into()];
            f.metadata.insert("owner".into(), json!("hr"));
            f.metadata.insert("status".into(), json!("approved"));
        });
        s.add_at(hb, "logo.png", demo_bytes(16, 50_000), at());
        s.add_at(hb, "Readme.txt", demo_text("Readme", 5), at());
        s.add_at(hb, "README.txt", demo_text("README", 7), at());
        s.add_at(hb, "onboarding-video.mp4", demo_bytes(17, 4 << 20), at());
        let old = s.add_at(hb, "Old Policy.pdf", demo_bytes(18, 20_000), at());
        s.edit(old, |f| f.trashed = true);

        s.add_at(
            ct,
            "Acme - Master Services Agreement.pdf",
            demo_bytes(21, 800_000),
            at(),
        );
        let nda = s.add_at(ct, "NDA template.docx", demo_bytes(22, 40_000), at());
        s.edit(nda, |f| f.tags = vec!["template".into()]);
        s.add_at(ct, "pricing.xlsx", demo_bytes(23, 120_000), at());
        s.add_at(ct, "tiny.txt", b"hi\n".to_vec(), at());
        let draft = s.add_at(ct, "Draft contract.docx", demo_bytes(24, 10_000), at());
        s.edit(draft, |f| f.trashed = true);

        for (key, name, seed, len) in [
            ("posts/1", "slides.pdf", 31u64, 200_000usize),
            ("comments/1", "screenshot.png", 32, 30_000),
            ("messages/1", "invoice.pdf", 33, 60_000),
        ] {
            let id = s.add_at(None, name, demo_bytes(seed, len), at());
            s.attachments.entry(key.to_string()).or_default().push(id);
        }
        s
    }

    fn add_at(&mut self, app: Option<u64>, name: &str, bytes: impl Into<Bytes>, ms: i64) -> u64 {
        let bytes = bytes.into();
        let id = self.next_id;
        self.next_id += 1;
        self.put(FileRec {
            id,
            app,
            name: name.to_string(),
            metadata: Map::new(),
            tags: Vec::new(),
            trashed: false,
            created: ms,
            updated: ms,
            revisions: vec![Revision {
                rev: 1,
                media_type: media_type_of(name).into(),
                bytes,
                created: ms,
            }],
        });
        id
    }

    /// Stores `f` under its id (a new file, or one replaced whole).
    fn put(&mut self, f: FileRec) {
        if let Some(ix) = self.index.get_mut() {
            if let Some(old) = self.files.get(&f.id) {
                ix.remove(old.id, filing(old));
            }
            ix.insert(f.id, filing(&f));
        }
        self.files.insert(f.id, f);
    }

    /// Changes file `id` through `change` (`None` when there is no such
    /// file), refiling it in the index if its app or trashed state moved.
    fn edit<T>(&mut self, id: u64, change: impl FnOnce(&mut FileRec) -> T) -> Option<T> {
        let f = self.files.get_mut(&id)?;
        let before = filing(f);
        let out = change(f);
        let after = filing(f);
        if let Some(ix) = self.index.get_mut().filter(|_| after != before) {
            ix.remove(id, before);
            ix.insert(id, after);
        }
        Some(out)
    }

    /// Deletes file `id` for good, from the index and the attachment lists.
    fn remove_file(&mut self, id: u64) -> Option<FileRec> {
        let f = self.files.remove(&id)?;
        if let Some(ix) = self.index.get_mut() {
            ix.remove(id, filing(&f));
        }
        for ids in self.attachments.values_mut() {
            ids.retain(|i| *i != id);
        }
        Some(f)
    }

    /// The list index, built from `files` the first time it is needed.
    fn index(&self) -> &FileIndex {
        self.index.get_or_init(|| FileIndex::build(&self.files))
    }

    fn push_revision(&mut self, id: u64, bytes: impl Into<Bytes>, ms: i64) {
        let bytes = bytes.into();
        self.edit(id, |f| {
            let rev = f.revisions.iter().map(|r| r.rev).max().unwrap_or(0) + 1;
            let media_type = f.current().media_type.clone();
            f.revisions.push(Revision {
                rev,
                media_type,
                bytes,
                created: ms,
            });
            f.updated = ms;
        });
    }

    /// Adds a file to an app (tests); returns its id.
    pub fn add_file(&mut self, app_uid: &str, name: &str, bytes: impl Into<Bytes>) -> u64 {
        let app = self.apps.iter().find(|a| a.uid == app_uid).map(|a| a.id);
        self.add_at(app, name, bytes, now_ms())
    }

    /// Current bytes of a file (tests).
    pub fn bytes(&self, id: u64) -> Option<&[u8]> {
        self.files.get(&id).map(|f| f.current().bytes.as_ref())
    }

    /// Bytes of one revision (tests).
    pub fn revision_bytes(&self, id: u64, rev: u64) -> Option<&[u8]> {
        self.files
            .get(&id)?
            .revisions
            .iter()
            .find(|r| r.rev == rev)
            .map(|r| r.bytes.as_ref())
    }

    fn app(&self, key: &str) -> Option<&App> {
        self.apps
            .iter()
            .find(|a| a.uid == key || a.id.to_string() == key)
    }

    fn object(&self, f: &FileRec, rev: Option<&Revision>, host: &str) -> Value {
        let r = rev.unwrap_or_else(|| f.current());
        let download = match rev {
            Some(r) => format!(
                "http://{host}/files/api/files/{}/versions/{}/download",
                f.id, r.rev
            ),
            None => format!("http://{host}/files/api/files/{}/download", f.id),
        };
        let mut o = json!({
            "id": f.id,
            "rev": r.rev,
            "name": f.name,
            "kind": "file",
            "media_type": r.media_type,
            "size": r.bytes.len(),
            "download_url": download,
            "created_at": iso(f.created),
            "updated_at": iso(if rev.is_some() { r.created } else { f.updated }),
            "is_trashed": f.trashed,
        });
        if !f.metadata.is_empty() {
            o["metadata"] = Value::Object(f.metadata.clone());
        }
        if !f.tags.is_empty() {
            o["tags"] = json!(f.tags);
        }
        if let Some(app) = f.app.and_then(|a| self.apps.iter().find(|x| x.id == a)) {
            o["app"] = json!({"id": app.id, "uid": app.uid});
        }
        o
    }
}

type ApiResult = Result<Response, Response>;

fn authorize(emu: &Emu, headers: &HeaderMap) -> Result<(), Response> {
    if bearer_ok(headers, &emu.creds.files_api_key) {
        Ok(())
    } else {
        Err(problem(
            StatusCode::UNAUTHORIZED,
            "missing or invalid API key",
        ))
    }
}

fn not_found(what: &str) -> Response {
    problem(StatusCode::NOT_FOUND, format!("{what} not found"))
}

pub fn routes() -> Router<Emu> {
    Router::new()
        .route("/api/blobs", post(upload_blob))
        .route("/api/apps/{app}", get(get_app))
        .route(
            "/api/apps/{app}/files",
            get(list_app_files).post(create_file),
        )
        .route("/api/files", get(list_all_files))
        .route(
            "/api/files/{id}",
            get(get_file).patch(update_file).delete(delete_file),
        )
        .route("/api/files/{id}/trash", post(trash_file))
        .route("/api/files/{id}/restore", post(restore_file))
        .route("/api/files/{id}/download", get(download_file))
        .route("/api/files/{id}/versions", get(list_versions))
        .route(
            "/api/files/{id}/versions/{rev}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/api/files/{id}/versions/{rev}/restore",
            post(restore_version),
        )
        .route(
            "/api/files/{id}/versions/{rev}/download",
            get(download_version),
        )
        .route("/api/posts/{id}/attachments", get(list_post_attachments))
        .route(
            "/api/comments/{id}/attachments",
            get(list_comment_attachments),
        )
        .route(
            "/api/messages/{id}/attachments",
            get(list_message_attachments),
        )
}

async fn upload_blob(State(emu): State<Emu>, headers: HeaderMap, mut form: Multipart) -> ApiResult {
    authorize(&emu, &headers)?;
    let mut blob = None;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| problem(StatusCode::BAD_REQUEST, e.to_string()))?
    {
        if field.name() == Some("blob") {
            let name = field.file_name().unwrap_or("blob").to_string();
            let media_type = field.content_type().map(str::to_string);
            let data = field
                .bytes()
                .await
                .map_err(|e| problem(StatusCode::BAD_REQUEST, e.to_string()))?;
            blob = Some((name, media_type, data));
        }
    }
    let Some((name, media_type, data)) = blob else {
        return Err(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "part 'blob' is required",
        ));
    };
    let media_type = media_type
        .filter(|m| m != "application/octet-stream")
        .unwrap_or_else(|| media_type_of(&name).to_string());
    let mut st = emu.files.lock();
    let id = st.next_blob;
    st.next_blob += 1;
    let size = data.len();
    st.blobs.insert(
        id,
        Blob {
            id,
            name: name.clone(),
            media_type: media_type.clone(),
            bytes: data,
        },
    );
    drop(st);
    emu.persist();
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "name": name, "media_type": media_type, "size": size})),
    )
        .into_response())
}

async fn get_app(State(emu): State<Emu>, headers: HeaderMap, Path(app): Path<String>) -> ApiResult {
    authorize(&emu, &headers)?;
    let st = emu.files.lock();
    let a = st.app(&app).ok_or_else(|| not_found("app"))?;
    Ok(Json(
        json!({"id": a.id, "uid": a.uid, "name": a.name, "display_name": a.name, "type": "files"}),
    )
    .into_response())
}

/// The list query parameters shared by every list route.
#[derive(Debug, Deserialize, Default)]
struct ListQuery {
    skip: Option<String>,
    take: Option<String>,
    q: Option<String>,
    tag: Option<String>,
    trashed: Option<String>,
    order_by: Option<String>,
    count_only: Option<String>,
    around: Option<String>,
}

/// The files a list shows.
#[derive(Clone, Copy)]
enum Scope<'a> {
    /// The files of an app.
    App(u64),
    /// Every file, attachments included.
    All,
    /// Named files (an attachment list).
    Ids(&'a [u64]),
}

#[derive(Clone, Copy, PartialEq)]
enum Order {
    Id,
    Name,
    Updated,
    Size,
}

/// A list query's paging, `trashed` filter and order, checked in the order
/// the API reports errors in.
struct Plan {
    skip: usize,
    take: usize,
    trashed: Option<bool>,
    order: Order,
    desc: bool,
    count_only: bool,
    around: Option<u64>,
}

impl Plan {
    fn parse(q: &ListQuery) -> Result<Plan, Response> {
        let bad = |m: &str| problem(StatusCode::BAD_REQUEST, m.to_string());
        let skip: usize = match &q.skip {
            Some(s) => s.parse().map_err(|_| bad("skip must be a number"))?,
            None => 0,
        };
        let take: usize = match &q.take {
            Some(s) => s.parse().map_err(|_| bad("take must be a number"))?,
            None => 25,
        };
        if !(1..=100).contains(&take) {
            return Err(bad("take must be between 1 and 100"));
        }
        let trashed = match q.trashed.as_deref() {
            None | Some("false") => Some(false),
            Some("true") => Some(true),
            Some("null") | Some("") => None,
            Some(_) => return Err(bad("trashed must be true, false or null")),
        };
        let mut parts = q.order_by.as_deref().unwrap_or("id").split([' ', '+']);
        let order = match parts.next().unwrap_or("id") {
            "id" => Order::Id,
            "name" => Order::Name,
            "updated_at" => Order::Updated,
            "size" => Order::Size,
            _ => return Err(bad("order_by must be id, name, updated_at or size")),
        };
        Ok(Plan {
            skip,
            take,
            trashed,
            order,
            desc: parts.next().is_some_and(|d| d.eq_ignore_ascii_case("desc")),
            count_only: q.count_only.as_deref() == Some("true"),
            around: q.around.as_ref().and_then(|a| a.parse().ok()),
        })
    }

    /// The first position shown: `around`'s page when `around` is listed
    /// (at `position`), else `skip`.
    fn start(&self, position: Option<usize>) -> usize {
        position.map_or(self.skip, |p| p.saturating_sub(self.take / 2))
    }
}

/// A page's body: where it starts and ends, the count, and `data` unless
/// the page is empty.
fn page_body(start: usize, page: Vec<Value>, count: usize) -> Value {
    let end = (start + page.len()).min(count);
    let mut body = json!({"start": start.min(count), "end": end, "count": count});
    if !page.is_empty() {
        body["data"] = Value::Array(page);
    }
    body
}

/// Serves a list from the index when it can, else by the full scan.
fn list(st: &FilesState, scope: Scope, q: &ListQuery, host: &str) -> ApiResult {
    let plan = Plan::parse(q)?;
    let body = indexed_list(st, scope, &plan, q, host)
        .unwrap_or_else(|| scanned_list(st, scope, &plan, q, host));
    Ok(Json(body).into_response())
}

/// The default list (id order either way, no `q` or `tag`) from the
/// index: O(log n) to reach the page, then O(take), `around` a rank lookup.
/// `None` for any other list, which [`scanned_list`] serves.
fn indexed_list(
    st: &FilesState,
    scope: Scope,
    plan: &Plan,
    q: &ListQuery,
    host: &str,
) -> Option<Value> {
    if plan.order != Order::Id || q.q.is_some() || q.tag.is_some() {
        return None;
    }
    let ids = st.index().ids(scope, plan.trashed)?;
    let count = ids.len();
    if plan.count_only {
        return Some(json!({"count": count}));
    }
    let rank = plan.around.and_then(|a| ids.rank(&a));
    let start = plan.start(rank.map(|r| if plan.desc { count - 1 - r } else { r }));
    let page = window(ids, start, plan.take, plan.desc)
        .into_iter()
        .map(|id| st.object(&st.files[&id], None, host))
        .collect();
    Some(page_body(start, page, count))
}

/// The ids at positions `start..start + take` of `ids`, or of `ids`
/// reversed when `desc`.
fn window(ids: &RankedSet<u64>, start: usize, take: usize, desc: bool) -> Vec<u64> {
    let n = ids.len();
    if start >= n {
        return Vec::new();
    }
    let len = take.min(n - start);
    let from = if desc { n - start - len } else { start };
    let mut page: Vec<u64> = ids.iter_from(from).take(len).copied().collect();
    if desc {
        page.reverse();
    }
    page
}

/// Any list, by filtering and sorting every file of the scope: O(n log n)
/// per page. Serves the orders by name, updated_at and size, the `q` and
/// `tag` filters and the attachment lists; the reference the index is
/// tested against.
fn scanned_list(st: &FilesState, scope: Scope, plan: &Plan, q: &ListQuery, host: &str) -> Value {
    let ids: Vec<u64> = match scope {
        Scope::App(a) => st
            .files
            .values()
            .filter(|f| f.app == Some(a))
            .map(|f| f.id)
            .collect(),
        Scope::All => st.files.keys().copied().collect(),
        Scope::Ids(ids) => ids.to_vec(),
    };
    let mut files: Vec<&FileRec> = ids
        .iter()
        .filter_map(|i| st.files.get(i))
        .filter(|f| plan.trashed.is_none_or(|t| f.trashed == t))
        .filter(|f| {
            q.q.as_ref()
                .is_none_or(|s| f.name.to_lowercase().contains(&s.to_lowercase()))
        })
        .filter(|f| q.tag.as_ref().is_none_or(|t| f.tags.contains(t)))
        .collect();
    sort(&mut files, plan.order);
    if plan.desc {
        files.reverse();
    }
    let count = files.len();
    if plan.count_only {
        return json!({"count": count});
    }
    let start = plan.start(
        plan.around
            .and_then(|a| files.iter().position(|f| f.id == a)),
    );
    let page = files
        .iter()
        .skip(start)
        .take(plan.take)
        .map(|f| st.object(f, None, host))
        .collect();
    page_body(start, page, count)
}

fn sort(files: &mut [&FileRec], order: Order) {
    match order {
        Order::Id => files.sort_by_key(|f| f.id),
        Order::Name => files.sort_by(|a, b| {
            a.name
                .to_lowercase()
                .cmp(&b.name.to_lowercase())
                .then(a.id.cmp(&b.id))
        }),
        Order::Updated => files.sort_by_key(|f| (f.updated, f.id)),
        Order::Size => files.sort_by_key(|f| (f.current().bytes.len(), f.id)),
    }
}

async fn list_app_files(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path(app): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let st = emu.files.lock();
    let app_id = st.app(&app).ok_or_else(|| not_found("app"))?.id;
    list(&st, Scope::App(app_id), &q, &host(&headers))
}

async fn list_all_files(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let st = emu.files.lock();
    list(&st, Scope::All, &q, &host(&headers))
}

fn attachments(emu: &Emu, headers: &HeaderMap, kind: &str, id: &str, q: &ListQuery) -> ApiResult {
    authorize(emu, headers)?;
    let st = emu.files.lock();
    let ids = st
        .attachments
        .get(&format!("{kind}/{id}"))
        .ok_or_else(|| not_found(kind.trim_end_matches('s')))?;
    list(&st, Scope::Ids(ids), q, &host(headers))
}

async fn list_post_attachments(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    attachments(&emu, &headers, "posts", &id, &q)
}

async fn list_comment_attachments(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    attachments(&emu, &headers, "comments", &id, &q)
}

async fn list_message_attachments(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    attachments(&emu, &headers, "messages", &id, &q)
}

#[derive(Debug, Deserialize)]
struct CreateBody {
    blob_id: Option<Value>,
    name: Option<String>,
    metadata: Option<Map<String, Value>>,
    tags: Option<Vec<String>>,
    replace: Option<bool>,
}

fn blob_id(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

async fn create_file(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path(app): Path<String>,
    body: Option<Json<CreateBody>>,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let Some(Json(body)) = body else {
        return Err(problem(StatusCode::BAD_REQUEST, "a JSON body is required"));
    };
    let Some(bid) = body.blob_id.as_ref() else {
        return Err(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "blob_id is required",
        ));
    };
    let bid = blob_id(bid).ok_or_else(|| {
        problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "blob_id must be an integer",
        )
    })?;
    let host = host(&headers);
    let mut st = emu.files.lock();
    let app_id = st.app(&app).ok_or_else(|| not_found("app"))?.id;
    let blob = st
        .blobs
        .get(&bid)
        .cloned()
        .ok_or_else(|| not_found("blob"))?;
    let name = body
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| blob.name.clone());
    let existing = st
        .files
        .values()
        .find(|f| f.app == Some(app_id) && !f.trashed && f.name == name)
        .map(|f| f.id);
    let now = now_ms();
    let (id, status) = match existing {
        Some(_) if body.replace != Some(true) => {
            return Err(problem(
                StatusCode::CONFLICT,
                format!("a file named {name:?} already exists"),
            ));
        }
        Some(id) => {
            st.push_revision(id, blob.bytes.clone(), now);
            (id, StatusCode::OK)
        }
        None => {
            let id = st.add_at(Some(app_id), &name, blob.bytes.clone(), now);
            st.edit(id, |f| f.revisions[0].media_type = blob.media_type.clone());
            (id, StatusCode::CREATED)
        }
    };
    st.edit(id, |f| {
        if let Some(m) = body.metadata {
            f.metadata = m;
        }
        if let Some(t) = body.tags {
            f.tags = t;
        }
    });
    let obj = st.object(&st.files[&id], None, &host);
    drop(st);
    emu.persist();
    Ok((status, Json(obj)).into_response())
}

#[derive(Debug, Deserialize, Default)]
struct TrashedQuery {
    trashed: Option<String>,
}

async fn get_file(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Query(q): Query<TrashedQuery>,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let st = emu.files.lock();
    let f = st.files.get(&id).ok_or_else(|| not_found("file"))?;
    if f.trashed && q.trashed.as_deref() != Some("true") {
        return Err(not_found("file"));
    }
    Ok(Json(st.object(f, None, &host(&headers))).into_response())
}

#[derive(Debug, Deserialize)]
struct UpdateBody {
    name: Option<String>,
    blob_id: Option<Value>,
    metadata: Option<Map<String, Value>>,
    tags: Option<Vec<String>>,
    backup: Option<bool>,
}

async fn update_file(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    body: Option<Json<UpdateBody>>,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let Some(Json(body)) = body else {
        return Err(problem(StatusCode::BAD_REQUEST, "a JSON body is required"));
    };
    let host = host(&headers);
    let mut st = emu.files.lock();
    let f = st.files.get(&id).ok_or_else(|| not_found("file"))?.clone();
    if let Some(name) = &body.name {
        if name.is_empty() {
            return Err(problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "name must not be empty",
            ));
        }
        let clash = st.files.values().any(|o| {
            o.id != id && o.app.is_some() && o.app == f.app && !o.trashed && &o.name == name
        });
        if clash && !f.trashed {
            return Err(problem(
                StatusCode::CONFLICT,
                format!("a file named {name:?} already exists"),
            ));
        }
    }
    let blob = match &body.blob_id {
        Some(v) => {
            let bid = blob_id(v).ok_or_else(|| {
                problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "blob_id must be an integer",
                )
            })?;
            Some(
                st.blobs
                    .get(&bid)
                    .cloned()
                    .ok_or_else(|| not_found("blob"))?,
            )
        }
        None => None,
    };
    let now = now_ms();
    if let Some(b) = blob {
        if body.backup == Some(true) {
            st.push_revision(id, b.bytes, now);
        } else {
            st.edit(id, |f| {
                let cur = f.revisions.last_mut().expect("a revision");
                cur.bytes = b.bytes;
                cur.created = now;
                f.updated = now;
            });
        }
    }
    st.edit(id, |f| {
        if let Some(name) = body.name {
            f.name = name;
            f.updated = now;
        }
        if let Some(m) = body.metadata {
            f.metadata = m;
            f.updated = now;
        }
        if let Some(t) = body.tags {
            f.tags = t;
            f.updated = now;
        }
    });
    let obj = st.object(&st.files[&id], None, &host);
    drop(st);
    emu.persist();
    Ok(Json(obj).into_response())
}

async fn delete_file(State(emu): State<Emu>, headers: HeaderMap, Path(id): Path<u64>) -> ApiResult {
    authorize(&emu, &headers)?;
    let mut st = emu.files.lock();
    st.remove_file(id).ok_or_else(|| not_found("file"))?;
    drop(st);
    emu.persist();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_trashed(emu: &Emu, headers: &HeaderMap, id: u64, trashed: bool) -> ApiResult {
    authorize(emu, headers)?;
    let mut st = emu.files.lock();
    st.edit(id, |f| {
        f.trashed = trashed;
        f.updated = now_ms();
    })
    .ok_or_else(|| not_found("file"))?;
    drop(st);
    emu.persist();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn trash_file(State(emu): State<Emu>, headers: HeaderMap, Path(id): Path<u64>) -> ApiResult {
    set_trashed(&emu, &headers, id, true).await
}

async fn restore_file(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> ApiResult {
    set_trashed(&emu, &headers, id, false).await
}

fn serve_bytes(
    emu: &Emu,
    method: &Method,
    headers: &HeaderMap,
    r: &Revision,
    modified: i64,
) -> Response {
    let modified = UNIX_EPOCH + Duration::from_millis(modified.max(0) as u64);
    content::serve(
        emu,
        method,
        headers,
        r.bytes.clone(),
        modified,
        &r.media_type,
    )
}

async fn download_file(
    State(emu): State<Emu>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let st = emu.files.lock();
    let f = st.files.get(&id).ok_or_else(|| not_found("file"))?;
    Ok(serve_bytes(&emu, &method, &headers, f.current(), f.updated))
}

async fn download_version(
    State(emu): State<Emu>,
    method: Method,
    headers: HeaderMap,
    Path((id, rev)): Path<(u64, u64)>,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let st = emu.files.lock();
    let f = st.files.get(&id).ok_or_else(|| not_found("file"))?;
    let r = f
        .revisions
        .iter()
        .find(|r| r.rev == rev)
        .ok_or_else(|| not_found("revision"))?;
    Ok(serve_bytes(&emu, &method, &headers, r, r.created))
}

async fn list_versions(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let st = emu.files.lock();
    let f = st.files.get(&id).ok_or_else(|| not_found("file"))?;
    let host = host(&headers);
    let data: Vec<Value> = f
        .revisions
        .iter()
        .rev()
        .map(|r| st.object(f, Some(r), &host))
        .collect();
    Ok(Json(json!({ "data": data })).into_response())
}

async fn get_version(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path((id, rev)): Path<(u64, u64)>,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let st = emu.files.lock();
    let f = st.files.get(&id).ok_or_else(|| not_found("file"))?;
    let r = f
        .revisions
        .iter()
        .find(|r| r.rev == rev)
        .ok_or_else(|| not_found("revision"))?;
    Ok(Json(st.object(f, Some(r), &host(&headers))).into_response())
}

async fn delete_version(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path((id, rev)): Path<(u64, u64)>,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let mut st = emu.files.lock();
    let f = st.files.get(&id).ok_or_else(|| not_found("file"))?;
    let pos = f
        .revisions
        .iter()
        .position(|r| r.rev == rev)
        .ok_or_else(|| not_found("revision"))?;
    if f.revisions.len() == 1 {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "the only revision of a file cannot be deleted",
        ));
    }
    st.edit(id, |f| f.revisions.remove(pos));
    drop(st);
    emu.persist();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn restore_version(
    State(emu): State<Emu>,
    headers: HeaderMap,
    Path((id, rev)): Path<(u64, u64)>,
) -> ApiResult {
    authorize(&emu, &headers)?;
    let mut st = emu.files.lock();
    let f = st.files.get(&id).ok_or_else(|| not_found("file"))?;
    let bytes = f
        .revisions
        .iter()
        .find(|r| r.rev == rev)
        .ok_or_else(|| not_found("revision"))?
        .bytes
        .clone();
    st.push_revision(id, bytes, now_ms());
    drop(st);
    emu.persist();
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use axum::http::header::AUTHORIZATION;
    use rand::rngs::StdRng;
    use rand::seq::IndexedRandom;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::{Credentials, Dataset, Faults};

    const APPS: [Option<u64>; 4] = [Some(1), Some(2), Some(3), None];

    /// One random change: a new file, a move to another app (or out of
    /// every app), trash, restore, a rename, a revision, a file replaced
    /// whole, or a delete.
    fn mutate(st: &mut FilesState, rng: &mut StdRng) {
        let ids: Vec<u64> = st.files.keys().copied().collect();
        let Some(&id) = ids.choose(rng).filter(|_| rng.random_bool(0.7)) else {
            let app = *APPS.choose(rng).unwrap();
            st.add_at(app, &format!("n{}", rng.random::<u16>()), b"x".to_vec(), 1);
            return;
        };
        match rng.random_range(0..7) {
            0 => st.edit(id, |f| f.app = *APPS.choose(rng).unwrap()),
            1 => st.edit(id, |f| f.trashed = !f.trashed),
            2 => st.edit(id, |f| f.name = format!("r{}", rng.random::<u8>())),
            3 => {
                st.push_revision(id, vec![0; rng.random_range(0..9)], 2);
                Some(())
            }
            4 => {
                let mut f = st.files[&id].clone();
                (f.app, f.trashed) = (*APPS.choose(rng).unwrap(), rng.random());
                st.put(f);
                Some(())
            }
            _ => st.remove_file(id).map(drop),
        };
    }

    fn random_query(st: &FilesState, rng: &mut StdRng) -> ListQuery {
        let pick = |rng: &mut StdRng, options: &[&str]| -> Option<String> {
            options
                .choose(rng)
                .filter(|o| !o.is_empty())
                .map(|o| o.to_string())
        };
        let n = st.files.len() + 3;
        let skip = [
            String::new(),
            rng.random_range(0..n).to_string(),
            u64::MAX.to_string(),
        ];
        let around = [
            String::new(),
            rng.random_range(0..st.next_id + 2).to_string(),
            "abc".into(),
        ];
        let take = ["", "1", "2", "3", "7", "25", "100"];
        ListQuery {
            skip: pick(rng, &skip.iter().map(String::as_str).collect::<Vec<_>>()),
            take: pick(rng, &take),
            trashed: pick(rng, &["", "false", "true", "null"]),
            order_by: pick(rng, &["", "id", "id desc", "id+DESC", "id asc", "id+x"]),
            count_only: pick(rng, &["", "", "", "true", "false"]),
            around: pick(rng, &around.iter().map(String::as_str).collect::<Vec<_>>()),
            ..Default::default()
        }
    }

    /// Every default list the index serves, against the full scan, byte
    /// for byte, after each of a random run of changes; the index is built
    /// before the changes, so each of them has to keep it in step.
    #[test]
    fn the_index_lists_what_the_full_scan_lists() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut st = FilesState::demo();
        st.index();
        for step in 0..3_000 {
            mutate(&mut st, &mut rng);
            for _ in 0..4 {
                let q = random_query(&st, &mut rng);
                let plan = Plan::parse(&q).unwrap();
                for scope in [Scope::App(1), Scope::App(2), Scope::App(3), Scope::All] {
                    let fast = indexed_list(&st, scope, &plan, &q, "h").expect("indexed");
                    let full = scanned_list(&st, scope, &plan, &q, "h");
                    assert_eq!(fast.to_string(), full.to_string(), "step {step}, {q:?}");
                }
            }
        }
    }

    /// Orders other than id, `q`, `tag` and attachment lists go the full way.
    #[test]
    fn other_lists_fall_back_to_the_scan() {
        let st = FilesState::demo();
        let ids = [1, 2];
        for (scope, query) in [
            (Scope::App(1), "order_by=name"),
            (Scope::App(1), "order_by=size+desc"),
            (Scope::App(1), "q=read"),
            (Scope::All, "tag=policy"),
            (Scope::Ids(&ids), "order_by=id"),
        ] {
            let q: ListQuery = query_of(query);
            let plan = Plan::parse(&q).unwrap();
            assert!(
                indexed_list(&st, scope, &plan, &q, "h").is_none(),
                "{query}"
            );
        }
    }

    fn query_of(query: &str) -> ListQuery {
        let uri: axum::http::Uri = format!("/?{query}").parse().unwrap();
        Query::<ListQuery>::try_from_uri(&uri).unwrap().0
    }

    /// Times the 1,000 pages of 100 of a 100,000-file app, as the client
    /// pages it (`trashed=false`, `order_by=id`), through the route and
    /// through the full scan the route used to make. Prints, asserts
    /// nothing about time:
    /// `cargo test -p bridgefs-emulator -- --ignored --nocapture`.
    #[tokio::test]
    #[ignore]
    async fn time_pages_of_a_large_app() {
        let mut d = Dataset::empty();
        for i in 0..100_000 {
            d.files
                .add_file("handbook", &format!("f{i}.txt"), Bytes::from_static(b"x"));
        }
        let emu = Emu::new(d, Credentials::default(), Faults::default(), None);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "Bearer demo-files-key".parse().unwrap());
        let page = |p: usize| ListQuery {
            skip: Some((p * 100).to_string()),
            take: Some("100".into()),
            trashed: Some("false".into()),
            order_by: Some("id".into()),
            ..Default::default()
        };
        let started = Instant::now();
        for p in 0..1000 {
            let r = list_app_files(
                State(emu.clone()),
                headers.clone(),
                Path("handbook".into()),
                Query(page(p)),
            )
            .await
            .unwrap();
            let body = axum::body::to_bytes(r.into_body(), usize::MAX)
                .await
                .unwrap();
            assert!(body.len() > 100);
        }
        println!("1,000 pages of a 100,000-file app: {:?}", started.elapsed());
        let started = Instant::now();
        let st = emu.files.lock();
        for p in 0..1000 {
            let q = page(p);
            let plan = Plan::parse(&q).unwrap();
            let body = scanned_list(&st, Scope::App(1), &plan, &q, "h").to_string();
            assert!(body.len() > 100);
        }
        println!("the same by the full scan: {:?}", started.elapsed());
    }
}
