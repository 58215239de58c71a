//! The web UI's pages as askama templates (under `templates/`, compiled into the binary
//! and checked against these structs at build time) and the view models they show. Every
//! value reaches the HTML through askama's escaping; nothing here is marked safe (a
//! comment's line breaks are kept by CSS, not by markup). The helpers at the end turn
//! store records into display text (sizes, times, short digests, paging links).

use askama::Template;

use crate::index::store::{
    Collaborator, Comment, Delivery, DeliveryStatus, ManifestRecord, Repository, TagRecord, Webhook,
};
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
    pub stars: u64,
}

impl RepoRow {
    pub fn new(repo: &Repository, stars: u64) -> RepoRow {
        RepoRow {
            name: repo.name.clone(),
            href: repository_href(&repo.name),
            summary: summary(&repo.description, 160),
            visibility: repo.visibility.as_str(),
            pushed: repo.pushed_at.map(time_text),
            stars,
        }
    }
}

/// The signed-in viewer's starred repositories (those they may still pull), a page of
/// them.
pub struct StarredList {
    pub repos: Vec<RepoRow>,
    pub pager: Pager,
}

#[derive(Template)]
#[template(path = "home.html", config = "src/index/web/askama.toml")]
pub struct HomePage {
    pub layout: Layout,
    pub query: String,
    pub total: usize,
    pub repos: Vec<RepoRow>,
    pub pager: Pager,
    /// "Your stars": for a signed-in viewer on the unfiltered list.
    pub starred: Option<StarredList>,
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

/// A repository's stars as its page shows them.
pub struct StarView {
    pub count: u64,
    /// Whether the viewer starred it (false when signed out).
    pub starred: bool,
    /// Whether the viewer may star it: signed in (the page itself needs pull access).
    pub may_star: bool,
}

pub struct CommentRow {
    pub id: i64,
    /// `comment-<id>`: the anchor a new comment's redirect points at.
    pub anchor: String,
    pub author: String,
    /// Exactly as posted; the page escapes it and CSS keeps its line breaks.
    pub body: String,
    pub created: Time,
    /// Where its delete form posts, when the viewer may delete it.
    pub delete_action: Option<String>,
}

impl CommentRow {
    pub fn new(repo: &str, c: &Comment, may_delete: bool) -> CommentRow {
        CommentRow {
            id: c.id,
            anchor: format!("comment-{}", c.id),
            author: c.author.clone(),
            body: c.body.clone(),
            created: time_text(c.created_at),
            delete_action: may_delete.then(|| format!("/r/{repo}/-/comments/{}/delete", c.id)),
        }
    }
}

/// The comments section of a repository page: a page of comments, newest first.
pub struct CommentsView {
    pub list: Vec<CommentRow>,
    /// The next (older) page, if there is one.
    pub older: Option<String>,
    /// Back to the newest comments, when this page is an older one.
    pub newest: Option<String>,
    /// Whether the viewer may comment: signed in (the page itself needs pull access).
    pub may_comment: bool,
    pub action: String,
    pub max_chars: usize,
    /// Why the viewer's comment was refused.
    pub error: Option<String>,
    /// The refused comment's text, to try again.
    pub draft: String,
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
    pub stars: StarView,
    pub comments: CommentsView,
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

/// One delivery in a hook's history.
pub struct DeliveryRow {
    pub id: String,
    pub id_short: String,
    pub event: &'static str,
    pub status: &'static str,
    pub status_code: Option<u16>,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created: Time,
    pub delivered: Option<Time>,
    /// When the next attempt is due, while pending.
    pub next_attempt: Option<Time>,
    pub redeliver_action: String,
}

impl DeliveryRow {
    pub fn new(repo: &str, hook: i64, d: &Delivery) -> DeliveryRow {
        DeliveryRow {
            id_short: d.id.chars().take(12).collect(),
            redeliver_action: format!("/r/{repo}/-/webhooks/{hook}/deliveries/{}/redeliver", d.id),
            id: d.id.clone(),
            event: d.event.as_str(),
            status: d.status.as_str(),
            status_code: d.last_status_code,
            attempts: d.attempts,
            last_error: d.last_error.clone(),
            created: time_text(d.created_at),
            delivered: d.delivered_at.map(time_text),
            next_attempt: (d.status == DeliveryStatus::Pending)
                .then(|| time_text(d.next_attempt_at)),
        }
    }
}

/// One of a repository's hooks with its latest deliveries. Never its secret: the store
/// does not even hand it out.
pub struct HookRow {
    pub id: i64,
    pub anchor: String,
    pub url: String,
    pub events: String,
    pub created_by: String,
    pub created: Time,
    pub remove_action: String,
    pub deliveries: Vec<DeliveryRow>,
    /// Whether it has older deliveries than those shown.
    pub more_deliveries: bool,
}

impl HookRow {
    /// `deliveries` newest first; at most `shown` of them are listed.
    pub fn new(repo: &str, hook: &Webhook, deliveries: &[Delivery], shown: usize) -> HookRow {
        HookRow {
            id: hook.id,
            anchor: format!("hook-{}", hook.id),
            url: hook.url.clone(),
            events: hook
                .events
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            created_by: hook.created_by.clone(),
            created: time_text(hook.created_at),
            remove_action: format!("/r/{repo}/-/webhooks/{}/delete", hook.id),
            deliveries: deliveries
                .iter()
                .take(shown)
                .map(|d| DeliveryRow::new(repo, hook.id, d))
                .collect(),
            more_deliveries: deliveries.len() > shown,
        }
    }
}

/// The webhooks section of the settings page (webhooks on).
pub struct WebhooksView {
    pub hooks: Vec<HookRow>,
    pub max_hooks: usize,
    /// How many deliveries of each hook are listed.
    pub shown: usize,
    /// How long delivery history is kept.
    pub history_days: i64,
    /// Whether `http://` URLs are accepted besides `https://`.
    pub allow_http: bool,
    pub action: String,
    /// The add form's URL and events (what was submitted, after a refusal).
    pub url_value: String,
    pub push_checked: bool,
    pub delete_checked: bool,
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
    /// `None` while webhooks are turned off on this registry.
    pub webhooks: Option<WebhooksView>,
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
        let comment = Comment {
            id: 7,
            repository: "alice/app".into(),
            author: "<b>mallory</b>".into(),
            body: "<script>alert(3)</script>\nsecond <img src=x onerror=alert(4)> line".into(),
            created_at: 60,
        };
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
            stars: StarView {
                count: 2,
                starred: true,
                may_star: true,
            },
            comments: CommentsView {
                list: vec![CommentRow::new("alice/app", &comment, true)],
                older: Some("/r/alice/app?before=7".into()),
                newest: None,
                may_comment: true,
                action: "/r/alice/app/-/comments".into(),
                max_chars: 2000,
                error: Some("<i>refused</i>".into()),
                draft: "</textarea><script>alert(5)</script>".into(),
            },
        };
        let html = page.render().unwrap();
        for raw in [
            "<script",
            "<img",
            "<b>",
            "<i>",
            "\"onmouseover",
            "tok\"en",
            "</textarea><",
        ] {
            assert!(!html.contains(raw), "{raw} reached the page unescaped");
        }
        // The body's line break stays a character (CSS shows it), not markup.
        assert!(html.contains(
            "<div class=\"comment-body\">&#60;script&#62;alert(3)&#60;/script&#62;\nsecond"
        ));
        assert!(html.contains("/r/alice/app/-/comments/7/delete"));
        assert!(html.contains("/r/alice/app/-/unstar"));
        assert!(html.contains("2 stars"));
        assert!(html.contains("Older comments"));
        assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"));
        assert!(html.contains("docker pull registry.example:443/alice/app:v1"));
        assert!(html.contains("<html lang=\"en\">"));

        let (pager, _) = Pager::new(60, 2, "Repository list pages", |n| format!("/?page={n}"));
        let (star_pager, _) = Pager::new(1, 1, "Your stars pages", |n| format!("/?spage={n}"));
        let home = HomePage {
            layout: layout(),
            query: xss.into(),
            total: 1,
            repos: vec![RepoRow::new(&repo, 3)],
            pager,
            starred: Some(StarredList {
                repos: vec![RepoRow::new(&repo, 3)],
                pager: star_pager,
            }),
        }
        .render()
        .unwrap();
        assert!(!home.contains("<script") && !home.contains("<img"));
        assert!(home.contains("Page 2 of 3"));
        assert!(home.contains("rel=\"prev\"") && home.contains("rel=\"next\""));
        assert!(home.contains("Your stars") && home.contains("<td class=\"stars\">3</td>"));
    }

    /// A hook's URL, events and deliveries reach the settings page escaped; the page has
    /// no place for a secret.
    #[test]
    fn webhooks_are_listed_escaped() {
        use crate::index::store::{HookRef, WebhookEvent};
        let hook = Webhook {
            id: 4,
            repository: "alice/app".into(),
            url: "https://hooks.example/\"><script>alert(1)</script>".into(),
            events: vec![WebhookEvent::Push, WebhookEvent::Delete],
            active: true,
            created_by: "alice".into(),
            created_at: 60,
        };
        let delivery = |n: u32| Delivery {
            id: format!("{n:032x}"),
            hook: HookRef::Repository(4),
            repository: "alice/app".into(),
            event_id: "e".into(),
            event: WebhookEvent::Push,
            status: DeliveryStatus::Failed,
            attempts: 12,
            next_attempt_at: 0,
            last_status_code: Some(500),
            last_error: Some("<b>boom</b>".into()),
            created_at: 60,
            delivered_at: None,
        };
        let list: Vec<Delivery> = (0..21).map(delivery).collect();
        let row = HookRow::new("alice/app", &hook, &list, 20);
        assert_eq!(row.deliveries.len(), 20);
        assert!(row.more_deliveries);
        assert_eq!(row.events, "push, delete");
        assert_eq!(
            row.deliveries[1].redeliver_action,
            format!("/r/alice/app/-/webhooks/4/deliveries/{:032x}/redeliver", 1)
        );
        let (collaborator_pager, _) = Pager::new(0, 1, "Collaborator pages", |n| n.to_string());
        let page = SettingsPage {
            layout: layout(),
            repo: RepoView::new(&repository(""), true),
            error: None,
            max_description: 4096,
            description_value: String::new(),
            collaborators: Vec::new(),
            collaborator_pager,
            collaborator_value: String::new(),
            deletes_allowed: true,
            webhooks: Some(WebhooksView {
                hooks: vec![row],
                max_hooks: 20,
                shown: 20,
                history_days: 30,
                allow_http: false,
                action: "/r/alice/app/-/webhooks".into(),
                url_value: "\"><img src=x>".into(),
                push_checked: true,
                delete_checked: false,
            }),
        }
        .render()
        .unwrap();
        for raw in ["<script", "<img", "<b>"] {
            assert!(!page.contains(raw), "{raw} reached the page unescaped");
        }
        assert!(page.contains("the latest 20"));
        assert!(page.contains("value=\"push\" checked"));
        assert!(!page.contains("value=\"delete\" checked"));
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
