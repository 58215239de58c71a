//! The web UI's pages as askama templates (under `templates/`, compiled into the binary
//! and checked against these structs at build time) and the view models they show. Every
//! value reaches the HTML through askama's escaping; nothing here is marked safe. The
//! helpers at the end turn store records into display text (sizes, times, short digests,
//! paging links).

use askama::Template;

use crate::index::store::{Collaborator, ManifestRecord, Repository, TagRecord};
use crate::index::token::rfc3339;

/// Rows per page of every list.
pub const PAGE_SIZE: usize = 25;

/// What the frame of every page shows: who is signed in, the sign-out form's token, the
/// search box, a one-line notice.
pub struct Layout {
    pub user: Option<String>,
    /// The session's CSRF token (empty when signed out: there are no forms to protect).
    pub csrf: String,
    pub query: String,
    pub notice: Option<&'static str>,
    /// The stylesheet's address, versioned by its content.
    pub style: &'static str,
    /// Where images are pulled from (`[index] public_host`).
    pub registry_host: String,
}

/// A list's position, with links to the neighbouring pages.
pub struct Pager {
    /// 1-based.
    pub page: usize,
    pub pages: usize,
    pub total: usize,
    pub prev: Option<String>,
    pub next: Option<String>,
    /// The pagination landmark's accessible name.
    pub label: &'static str,
}

impl Pager {
    /// Page `page` (clamped into range) of `total` items; `href(n)` is the address of
    /// page `n`. Returns the pager and the range of item indexes on the page.
    pub fn new(
        total: usize,
        page: usize,
        label: &'static str,
        href: impl Fn(usize) -> String,
    ) -> (Pager, std::ops::Range<usize>) {
        let pages = total.div_ceil(PAGE_SIZE).max(1);
        let page = page.clamp(1, pages);
        let start = (page - 1) * PAGE_SIZE;
        let end = (start + PAGE_SIZE).min(total);
        let pager = Pager {
            page,
            pages,
            total,
            prev: (page > 1).then(|| href(page - 1)),
            next: (page < pages).then(|| href(page + 1)),
            label,
        };
        (pager, start..end)
    }
}

/// The repository facts every repository page shows.
pub struct RepoView {
    pub name: String,
    pub href: String,
    pub settings_href: String,
    /// `/r/<name>/-/`: POST actions append their name.
    pub action_base: String,
    pub owner: String,
    pub visibility: &'static str,
    pub description: String,
    pub created: Time,
    pub pushed: Option<Time>,
    pub may_manage: bool,
}

impl RepoView {
    pub fn new(repo: &Repository, may_manage: bool) -> RepoView {
        RepoView {
            href: repository_href(&repo.name),
            settings_href: format!("/r/{}/-/settings", repo.name),
            action_base: format!("/r/{}/-/", repo.name),
            name: repo.name.clone(),
            owner: repo.owner.clone(),
            visibility: repo.visibility.as_str(),
            description: repo.description.clone(),
            created: time_text(repo.created_at),
            pushed: repo.pushed_at.map(time_text),
            may_manage,
        }
    }
}

pub struct RepoRow {
    pub name: String,
    pub href: String,
    /// The description's first line, shortened.
    pub summary: String,
    pub visibility: &'static str,
    pub pushed: Option<Time>,
}

impl RepoRow {
    pub fn new(repo: &Repository) -> RepoRow {
        RepoRow {
            name: repo.name.clone(),
            href: repository_href(&repo.name),
            summary: summary(&repo.description, 160),
            visibility: repo.visibility.as_str(),
            pushed: repo.pushed_at.map(time_text),
        }
    }
}

#[derive(Template)]
#[template(path = "home.html", config = "src/index/web/askama.toml")]
pub struct HomePage {
    pub layout: Layout,
    pub query: String,
    pub total: usize,
    pub repos: Vec<RepoRow>,
    pub pager: Pager,
    // Stars plug in here: the viewer's starred repositories, and a star count per row.
}

#[derive(Template)]
#[template(path = "signin.html", config = "src/index/web/askama.toml")]
pub struct SignInPage {
    pub layout: Layout,
    pub error: Option<&'static str>,
    /// The user name typed before a failed attempt (never the password).
    pub username: String,
    /// The double-submit token the sign-in cookie also holds.
    pub form_token: String,
}

#[derive(Template)]
#[template(path = "error.html", config = "src/index/web/askama.toml")]
pub struct ErrorPage {
    pub layout: Layout,
    pub title: &'static str,
    pub message: String,
}

pub struct TagRow {
    pub tag: String,
    pub digest: String,
    pub digest_short: String,
    pub manifest_href: String,
    pub size: u64,
    pub size_text: String,
    pub media_type: String,
    /// `os/architecture[/variant]` of each image in an image index; empty otherwise.
    pub platforms: Vec<String>,
    pub pushed: Time,
    pub pull_line: String,
    pub delete_href: String,
}

impl TagRow {
    pub fn new(repo: &str, host: &str, t: &TagRecord) -> TagRow {
        TagRow {
            tag: t.tag.clone(),
            digest: t.digest.clone(),
            digest_short: short_digest(&t.digest),
            manifest_href: manifest_href(repo, &t.digest),
            size: t.size,
            size_text: size_text(t.size),
            media_type: t.media_type.clone(),
            platforms: Vec::new(),
            pushed: time_text(t.pushed_at),
            pull_line: format!("docker pull {host}/{repo}:{}", t.tag),
            delete_href: format!("/r/{repo}/-/tags/{}/delete", t.tag),
        }
    }
}

pub struct ManifestRow {
    pub digest: String,
    pub digest_short: String,
    pub href: String,
    /// The tags pointing at it, at most [`TAGS_SHOWN`] and how many more.
    pub tags: String,
    pub size: u64,
    pub size_text: String,
    pub media_type: String,
    pub pushed: Time,
}

impl ManifestRow {
    pub fn new(repo: &str, m: &ManifestRecord) -> ManifestRow {
        ManifestRow {
            digest: m.digest.clone(),
            digest_short: short_digest(&m.digest),
            href: manifest_href(repo, &m.digest),
            tags: tag_list(&m.tags),
            size: m.size,
            size_text: size_text(m.size),
            media_type: m.media_type.clone(),
            pushed: time_text(m.pushed_at),
        }
    }
}

/// The pull command shown at the top of a repository page.
pub struct PullView {
    pub tag: String,
    pub line: String,
}

#[derive(Template)]
#[template(path = "repository.html", config = "src/index/web/askama.toml")]
pub struct RepositoryPage {
    pub layout: Layout,
    pub repo: RepoView,
    pub pull: Option<PullView>,
    /// Whether the content is in this process (else the note that it lives on the
    /// registries).
    pub content_local: bool,
    /// Whether the viewer may delete tags here (a manager, deletes on, content local).
    pub may_delete: bool,
    pub tags: Vec<TagRow>,
    pub tag_pager: Pager,
    pub manifests: Vec<ManifestRow>,
    pub manifest_pager: Pager,
    // Stars plug in here (count, whether the viewer starred it), and comments (a page of
    // them, whether the viewer may comment or delete comments).
}

pub struct DescriptorRow {
    pub digest: String,
    pub digest_short: String,
    pub size: u64,
    pub size_text: String,
    pub media_type: String,
    pub platform: Option<String>,
    /// The manifest page of an index's entry.
    pub href: String,
}

/// What an image config says about the image.
pub struct ConfigInfo {
    pub platform: Option<String>,
    pub created: Option<String>,
}

#[derive(Template)]
#[template(path = "manifest.html", config = "src/index/web/askama.toml")]
pub struct ManifestPage {
    pub layout: Layout,
    pub repo: RepoView,
    pub digest: String,
    pub digest_short: String,
    pub media_type: String,
    pub size: u64,
    pub size_text: String,
    pub pushed: Time,
    /// See [`ManifestRow::tags`].
    pub tags: String,
    pub pull_line: String,
    /// Why only the index's record is shown, when the content could not be read.
    pub unavailable: Option<&'static str>,
    pub config: Option<DescriptorRow>,
    pub config_info: Option<ConfigInfo>,
    pub layers: Vec<DescriptorRow>,
    pub layers_size_text: String,
    pub children: Vec<DescriptorRow>,
}

pub struct CollaboratorRow {
    pub user: String,
    pub access: &'static str,
    pub added: Time,
}

impl CollaboratorRow {
    pub fn new(c: &Collaborator) -> CollaboratorRow {
        CollaboratorRow {
            user: c.user.clone(),
            access: c.access.as_str(),
            added: time_text(c.added_at),
        }
    }
}

#[derive(Template)]
#[template(path = "settings.html", config = "src/index/web/askama.toml")]
pub struct SettingsPage {
    pub layout: Layout,
    pub repo: RepoView,
    pub error: Option<String>,
    pub max_description: usize,
    /// The textarea's text: the stored description, or what was submitted when it was
    /// refused.
    pub description_value: String,
    pub collaborators: Vec<CollaboratorRow>,
    pub collaborator_pager: Pager,
    /// The add form's user name after a refused attempt.
    pub collaborator_value: String,
    pub deletes_allowed: bool,
    // Webhooks plug in here: the repository's hooks and their recent deliveries.
}

#[derive(Template)]
#[template(path = "delete_tag.html", config = "src/index/web/askama.toml")]
pub struct DeleteTagPage {
    pub layout: Layout,
    pub repo: RepoView,
    pub tag: String,
    pub digest: String,
    pub action: String,
}

/// `/r/<name>`.
pub fn repository_href(name: &str) -> String {
    format!("/r/{name}")
}

/// `/r/<name>/-/manifests/<digest>`.
pub fn manifest_href(name: &str, digest: &str) -> String {
    format!("/r/{name}/-/manifests/{digest}")
}

/// A moment as a page shows it: RFC 3339 for the `datetime` attribute (as the API shows
/// times), and `2026-01-02 03:04 UTC` for people.
pub struct Time {
    pub iso: String,
    pub text: String,
}

/// Unix seconds as a [`Time`].
pub fn time_text(t: i64) -> Time {
    let iso = rfc3339(u64::try_from(t).unwrap_or(0));
    // `YYYY-MM-DDTHH:MM:SSZ`: the date, the hours and minutes.
    let text = match (iso.get(..10), iso.get(11..16)) {
        (Some(date), Some(hm)) => format!("{date} {hm} UTC"),
        _ => iso.clone(),
    };
    Time { iso, text }
}

/// `sha256:0123456789ab`: the algorithm and the first 12 hex digits.
pub fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algorithm, hex)) => format!("{algorithm}:{}", hex.get(..12).unwrap_or(hex)),
        None => digest.chars().take(19).collect(),
    }
}

/// Most tag names a manifest row shows (a manifest may have any number of tags).
pub const TAGS_SHOWN: usize = 10;

/// `a, b, c`, or `a, b, … and 12 more`; empty for none.
pub fn tag_list(tags: &[String]) -> String {
    let shown = tags
        .iter()
        .take(TAGS_SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    match tags.len().saturating_sub(TAGS_SHOWN) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// A byte count for people: `512 B`, `3.4 KiB`, `12.0 MiB`.
pub fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // f64 is exact enough for one decimal of any size a registry holds.
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The first line of `text`, cut to `max` characters with an ellipsis.
pub fn summary(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    if line.chars().count() <= max && text.trim().lines().count() <= 1 {
        return line.to_owned();
    }
    let cut: String = line.chars().take(max).collect();
    format!("{}…", cut.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size_text(0), "0 B");
        assert_eq!(size_text(1023), "1023 B");
        assert_eq!(size_text(1024), "1.0 KiB");
        assert_eq!(size_text(3 * 1024 * 1024 + 512 * 1024), "3.5 MiB");
        assert_eq!(size_text(u64::MAX), "16384.0 PiB");
    }

    #[test]
    fn digests_and_summaries() {
        assert_eq!(
            short_digest("sha256:0123456789abcdef0123"),
            "sha256:0123456789ab"
        );
        assert_eq!(short_digest("sha256:01"), "sha256:01");
        assert_eq!(summary("one line", 20), "one line");
        assert_eq!(summary("first\nsecond", 20), "first…");
        assert_eq!(summary("abcdef", 3), "abc…");
        assert_eq!(summary("", 3), "");
        let names: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
        assert_eq!(tag_list(&names[..2]), "t0, t1");
        assert_eq!(
            tag_list(&names),
            "t0, t1, t2, t3, t4, t5, t6, t7, t8, t9 and 2 more"
        );
        assert_eq!(tag_list(&[]), "");
        let t = time_text(86_400 + 3_723);
        assert_eq!(t.iso, "1970-01-02T01:02:03Z");
        assert_eq!(t.text, "1970-01-02 01:02 UTC");
    }

    fn layout() -> Layout {
        Layout {
            user: Some("<b>eve</b>".into()),
            csrf: "tok\"en".into(),
            query: "\"><script>alert(1)</script>".into(),
            notice: None,
            style: "/-/static/style.css",
            registry_host: "registry.example:443".into(),
        }
    }

    fn repository(description: &str) -> Repository {
        Repository {
            name: "alice/app".into(),
            namespace: "alice".into(),
            owner: "alice".into(),
            visibility: crate::index::store::Visibility::Public,
            description: description.into(),
            created_at: 0,
            pushed_at: Some(60),
        }
    }

    /// Text from users and pushers reaches the page escaped, in text and in attributes.
    #[test]
    fn pages_escape_what_users_wrote() {
        let xss = "<script>alert(1)</script><img src=x onerror=alert(2)>";
        let repo = repository(xss);
        let (tag_pager, _) = Pager::new(1, 1, "Tag pages", |n| format!("?page={n}"));
        let (manifest_pager, _) = Pager::new(0, 1, "Manifest pages", |n| format!("?mpage={n}"));
        let mut tag = TagRow::new(
            "alice/app",
            "registry.example:443",
            &TagRecord {
                tag: "v1".into(),
                digest: "sha256:\"onmouseover=\"x".into(),
                media_type: "<i>type</i>".into(),
                size: 2048,
                pushed_at: 60,
                pusher: None,
            },
        );
        tag.platforms = vec!["<b>linux</b>/amd64".into()];
        let page = RepositoryPage {
            layout: layout(),
            repo: RepoView::new(&repo, true),
            pull: None,
            content_local: true,
            may_delete: true,
            tags: vec![tag],
            tag_pager,
            manifests: Vec::new(),
            manifest_pager,
        };
        let html = page.render().unwrap();
        for raw in ["<script", "<img", "<b>", "<i>", "\"onmouseover", "tok\"en"] {
            assert!(!html.contains(raw), "{raw} reached the page unescaped");
        }
        assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"));
        assert!(html.contains("docker pull registry.example:443/alice/app:v1"));
        assert!(html.contains("<html lang=\"en\">"));

        let (pager, _) = Pager::new(60, 2, "Repository list pages", |n| format!("/?page={n}"));
        let home = HomePage {
            layout: layout(),
            query: xss.into(),
            total: 1,
            repos: vec![RepoRow::new(&repo)],
            pager,
        }
        .render()
        .unwrap();
        assert!(!home.contains("<script") && !home.contains("<img"));
        assert!(home.contains("Page 2 of 3"));
        assert!(home.contains("rel=\"prev\"") && home.contains("rel=\"next\""));
    }

    #[test]
    fn pagers() {
        let (p, range) = Pager::new(60, 2, "Tags", |n| format!("?page={n}"));
        assert_eq!((p.page, p.pages, range), (2, 3, 25..50));
        assert_eq!(p.prev.as_deref(), Some("?page=1"));
        assert_eq!(p.next.as_deref(), Some("?page=3"));
        let (p, range) = Pager::new(60, 99, "Tags", |n| format!("?page={n}"));
        assert_eq!((p.page, range), (3, 50..60));
        assert!(p.next.is_none());
        let (p, range) = Pager::new(0, 0, "Tags", |n| format!("?page={n}"));
        assert_eq!((p.page, p.pages, range), (1, 1, 0..0));
        assert!(p.prev.is_none() && p.next.is_none());
    }
}
