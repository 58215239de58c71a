//! The UI's GET pages: the repository list and search (with star counts, and the
//! viewer's own stars), sign-in form, repository page (with its stars and comments),
//! manifest page, owner settings (with the webhooks and their deliveries) and the
//! tag-delete confirmation. Store reads run on the blocking pool; every repository is
//! loaded through the policy first, so one the viewer may not pull answers the same 404 as
//! a missing one, and settings answer 403 to viewers who see the repository but do not
//! manage it.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, StatusCode};

use super::manifest::{self, Parsed};
use super::views::{
    CollaboratorRow, CommentRow, CommentsView, ConfigInfo, DeleteTagPage, DescriptorRow, HomePage,
    HookRow, ManifestPage, ManifestRow, Pager, PullView, RepoRow, RepoView, RepositoryPage,
    SettingsPage, SignInPage, StarView, StarredList, TagRow, WebhooksView,
};
use super::{html, notice, page_number, query_value, session, PageError, PageResult, Viewer};
use crate::index::community::{self, MAX_COMMENT_CHARS};
use crate::index::endpoint::EmbeddedIndex;
use crate::index::manage::{self, MAX_DESCRIPTION};
use crate::index::store::{
    Delivery, HookRef, ManifestRecord, Repository, StoreError, TagRecord, Webhook, WebhookEvent,
};
use crate::index::webhooks::owners::MAX_HOOKS_PER_REPOSITORY;
use crate::index::webhooks::worker::HISTORY_DAYS;

/// Largest image config read to show its platform and creation time.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// Comments per page of a repository's comments (the API's default page too).
const COMMENTS_PER_PAGE: usize = 25;
/// Deliveries listed per hook on the settings page (the API reads further back).
const DELIVERIES_SHOWN: usize = 20;

/// `/?q=&page=&spage=`: the repositories the viewer may pull, all or those matching `q`,
/// each with its star count; above them, for a signed-in viewer on the unfiltered list,
/// the repositories they starred (`spage` pages those).
pub(super) async fn home(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    query: &[(String, String)],
) -> PageResult {
    let q = query_value(query, "q").unwrap_or("").trim().to_owned();
    let page = page_number(query, "page");
    let star_page = page_number(query, "spage");
    // A search is about what it finds: the viewer's stars show on the plain list only.
    let star_user = viewer
        .session
        .as_ref()
        .filter(|_| q.is_empty())
        .and(viewer.identity.user.clone());
    let (repos, starred) = {
        let (index, who, q) = (index.clone(), viewer.identity.clone(), q.clone());
        tokio::task::spawn_blocking(move || -> Result<_, PageError> {
            let rules = index.auth.state();
            let policy = index.policy(&rules);
            let mut out = Vec::new();
            for repo in index
                .store
                .repositories(Some(q.as_str()).filter(|q| !q.is_empty()))?
            {
                if policy.may_pull_existing(&who, &repo)? {
                    out.push(repo);
                }
            }
            let starred = match star_user {
                Some(user) => Some(community::starred(&index, &who, &user)?),
                None => None,
            };
            Ok((out, starred))
        })
        .await??
    };
    let href = |n: usize| {
        if !q.is_empty() {
            format!("/?q={}&page={n}", form_encode(&q))
        } else if starred.is_some() {
            format!("/?page={n}&spage={star_page}")
        } else {
            format!("/?page={n}")
        }
    };
    let (pager, range) = Pager::new(repos.len(), page, "Repository list pages", href);
    let page_repos = &repos[range];
    let starred_page = starred.as_ref().map(|list| {
        let pager_page = pager.page;
        let (star_pager, star_range) = Pager::new(list.len(), star_page, "Your stars pages", |n| {
            format!("/?page={pager_page}&spage={n}#stars-heading")
        });
        (&list[star_range], star_pager)
    });
    // One count query for every row on the page, starred or listed.
    let names: Vec<String> = page_repos
        .iter()
        .chain(starred_page.iter().flat_map(|(list, _)| list.iter()))
        .map(|r| r.name.clone())
        .collect();
    let counts = star_counts(index, names).await?;
    let row = |r: &Repository| RepoRow::new(r, counts.get(&r.name).copied().unwrap_or(0));
    let page = HomePage {
        layout: viewer.layout(index, &q, notice(query)),
        total: repos.len(),
        repos: page_repos.iter().map(row).collect(),
        starred: starred_page.map(|(list, pager)| StarredList {
            repos: list.iter().map(row).collect(),
            pager,
        }),
        query: q,
        pager,
    };
    Ok(html(StatusCode::OK, &page))
}

/// The star counts of `names`.
async fn star_counts(
    index: &Arc<EmbeddedIndex>,
    names: Vec<String>,
) -> Result<HashMap<String, u64>, PageError> {
    let index = index.clone();
    Ok(tokio::task::spawn_blocking(move || index.store.star_counts(&names)).await??)
}

/// `q` as a query-string value.
fn form_encode(q: &str) -> String {
    serde_urlencoded::to_string([("q", q)])
        .map(|s| s.trim_start_matches("q=").to_owned())
        .unwrap_or_default()
}

/// `GET /-/signin`: the form, with a double-submit token also set as a cookie (the one
/// from an earlier visit is kept, so several tabs work).
pub(super) fn signin_form(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    headers: &HeaderMap,
) -> PageResult {
    if viewer.session.is_some() {
        return Ok(super::redirect("/"));
    }
    signin_page(index, viewer, headers, StatusCode::OK, None, "")
}

/// The sign-in form answering with `status`, showing `error` and the typed `username`.
pub(super) fn signin_page(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&'static str>,
    username: &str,
) -> PageResult {
    let token = match session::cookie(headers, session::SIGNIN_COOKIE).filter(|t| {
        t.len() == 43
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }) {
        Some(t) => t.to_owned(),
        None => session::random_token().map_err(|e| PageError::Internal(e.to_string()))?,
    };
    let page = SignInPage {
        layout: viewer.layout(index, "", None),
        error,
        username: username.to_owned(),
        form_token: token.clone(),
    };
    Ok(html(status, &page).header(
        http::header::SET_COOKIE,
        session::set_cookie(
            session::SIGNIN_COOKIE,
            &token,
            Some(session::SIGNIN_COOKIE_SECS),
        ),
    ))
}

/// What a repository page needs from the store, read in one blocking task.
struct RepoData {
    repo: Repository,
    may_manage: bool,
    tags: Vec<TagRecord>,
    manifests: Vec<ManifestRecord>,
}

async fn load_repository(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
) -> Result<RepoData, PageError> {
    let (index, who, name) = (index.clone(), viewer.identity.clone(), name.to_owned());
    tokio::task::spawn_blocking(move || -> Result<RepoData, PageError> {
        let repo = manage::visible_repository(&index, &who, &name)?.ok_or(PageError::NotFound)?;
        let rules = index.auth.state();
        let may_manage = index.policy(&rules).may_manage(&who, &name);
        Ok(RepoData {
            tags: index.store.tags(&name)?,
            manifests: index.store.manifests(&name)?,
            may_manage,
            repo,
        })
    })
    .await?
}

/// What the comment form shows besides the stored comments after a refused comment.
#[derive(Default)]
pub(super) struct CommentState {
    pub error: Option<String>,
    /// The refused text, to edit and send again.
    pub draft: String,
}

/// The stars and a page of comments of a repository, as the viewer sees them.
struct Social {
    star_count: u64,
    starred: bool,
    comments: community::CommentPage,
    /// Whether the viewer manages the repository (and so may delete any comment).
    manages: bool,
}

async fn load_social(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
    before: Option<i64>,
) -> Result<Social, PageError> {
    let (index, who, name) = (index.clone(), viewer.identity.clone(), name.to_owned());
    tokio::task::spawn_blocking(move || -> Result<Social, PageError> {
        // Through the visibility rule again: the repository may have changed since.
        let comments = community::comments(&index, &who, &name, before, COMMENTS_PER_PAGE)?;
        let starred = match who.user.as_deref() {
            Some(user) => index.store.has_starred(&name, user)?,
            None => false,
        };
        let rules = index.auth.state();
        Ok(Social {
            star_count: index.store.star_count(&name)?,
            starred,
            comments,
            manages: index.policy(&rules).may_manage(&who, &name),
        })
    })
    .await?
}

/// `/r/<name>?page=&mpage=&before=`: description, stars, pull command, tags (with the
/// platforms of image indexes), manifests, comments (`before` pages them as in the API).
pub(super) async fn repository(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
    query: &[(String, String)],
) -> PageResult {
    repository_page(
        index,
        viewer,
        name,
        query,
        StatusCode::OK,
        CommentState::default(),
    )
    .await
}

/// The repository page answering with `status`, its comment form showing `state`.
pub(super) async fn repository_page(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
    query: &[(String, String)],
    status: StatusCode,
    state: CommentState,
) -> PageResult {
    let data = load_repository(index, viewer, name).await?;
    // Nonsense is the first page, as with page numbers.
    let before = query_value(query, "before")
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|id| *id > 0);
    let social = load_social(index, viewer, name, before).await?;
    let host = index.public_host.as_str();
    let href = super::views::repository_href(name);
    let tag_page = page_number(query, "page");
    let manifest_page = page_number(query, "mpage");
    // The page of comments stays where it is while the tags or manifests are paged.
    let before_param = before.map(|b| format!("&before={b}")).unwrap_or_default();
    let (tag_pager, tag_range) = Pager::new(data.tags.len(), tag_page, "Tag pages", |n| {
        format!("{href}?page={n}&mpage={manifest_page}{before_param}#tags-heading")
    });
    let (manifest_pager, manifest_range) =
        Pager::new(data.manifests.len(), manifest_page, "Manifest pages", |n| {
            format!("{href}?page={tag_page}&mpage={n}{before_param}#manifests-heading")
        });
    let mut tags: Vec<TagRow> = data.tags[tag_range]
        .iter()
        .map(|t| TagRow::new(name, host, t))
        .collect();
    if let Some(local) = &index.local_registry {
        for row in tags
            .iter_mut()
            .filter(|t| manifest::is_index(&t.media_type))
        {
            match local.manifest(name, &row.digest).await {
                Ok(Some(bytes)) => row.platforms = manifest::platforms(&bytes),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(repository = %name, digest = %row.digest, error = %e, "reading a manifest for the web UI failed")
                }
            }
        }
    }
    // The pull command on top: `latest` if there is one, else the most recent push.
    let pull = data
        .tags
        .iter()
        .find(|t| t.tag == "latest")
        .or_else(|| data.tags.iter().max_by_key(|t| t.pushed_at))
        .map(|t| PullView {
            tag: t.tag.clone(),
            line: format!("docker pull {host}/{name}:{}", t.tag),
        });
    let deletes_allowed = index.auth.state().deletes_allowed();
    let user = viewer.identity.user.as_deref();
    let signed_in = viewer.session.is_some();
    let comments = CommentsView {
        list: social
            .comments
            .comments
            .iter()
            .map(|c| {
                let may_delete =
                    signed_in && community::may_delete_comment(&c.author, user, social.manages);
                CommentRow::new(name, c, may_delete)
            })
            .collect(),
        older: social.comments.next.map(|next| {
            format!("{href}?page={tag_page}&mpage={manifest_page}&before={next}#comments-heading")
        }),
        newest: before
            .map(|_| format!("{href}?page={tag_page}&mpage={manifest_page}#comments-heading")),
        may_comment: signed_in,
        action: format!("/r/{name}/-/comments"),
        max_chars: MAX_COMMENT_CHARS,
        error: state.error,
        draft: state.draft,
    };
    let page = RepositoryPage {
        layout: viewer.layout(index, "", notice(query)),
        stars: StarView {
            count: social.star_count,
            starred: social.starred,
            may_star: signed_in,
        },
        comments,
        repo: RepoView::new(&data.repo, data.may_manage),
        pull,
        content_local: index.local_registry.is_some(),
        may_delete: data.may_manage && deletes_allowed && index.local_registry.is_some(),
        tags,
        tag_pager,
        manifests: data.manifests[manifest_range]
            .iter()
            .map(|m| ManifestRow::new(name, m))
            .collect(),
        manifest_pager,
    };
    Ok(html(status, &page))
}

fn descriptor_row(name: &str, d: &manifest::Descriptor) -> DescriptorRow {
    DescriptorRow {
        digest: d.digest.clone(),
        digest_short: super::views::short_digest(&d.digest),
        size: d.size,
        size_text: super::views::size_text(d.size),
        media_type: d.media_type.clone(),
        platform: d.platform.clone(),
        href: super::views::manifest_href(name, &d.digest),
    }
}

/// `/r/<name>/-/manifests/<digest>`: what the index recorded of the manifest and, when
/// the registry is in this process, its config and layers or the manifests of an index.
pub(super) async fn manifest(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
    digest: &str,
) -> PageResult {
    let data = load_repository(index, viewer, name).await?;
    let record = data
        .manifests
        .iter()
        .find(|m| m.digest == digest)
        .ok_or(PageError::NotFound)?;
    let mut page = ManifestPage {
        layout: viewer.layout(index, "", None),
        repo: RepoView::new(&data.repo, data.may_manage),
        digest: record.digest.clone(),
        digest_short: super::views::short_digest(&record.digest),
        media_type: record.media_type.clone(),
        size: record.size,
        size_text: super::views::size_text(record.size),
        pushed: super::views::time_text(record.pushed_at),
        tags: super::views::tag_list(&record.tags),
        pull_line: format!("docker pull {}/{name}@{}", index.public_host, record.digest),
        unavailable: None,
        config: None,
        config_info: None,
        layers: Vec::new(),
        layers_size_text: String::new(),
        children: Vec::new(),
    };
    let Some(local) = &index.local_registry else {
        page.unavailable = Some(
            "This index holds no image content: the registries it serves do. Shown here is what they reported.",
        );
        return Ok(html(StatusCode::OK, &page));
    };
    let bytes = local
        .manifest(name, &record.digest)
        .await
        .map_err(|e| PageError::Internal(format!("reading manifest {}: {e}", record.digest)))?;
    let Some(bytes) = bytes else {
        page.unavailable = Some("The registry no longer holds this manifest's content.");
        return Ok(html(StatusCode::OK, &page));
    };
    match manifest::parse(&bytes) {
        Parsed::Image { config, layers } => {
            if let Some(c) = &config {
                match local.blob(name, &c.digest, MAX_CONFIG_BYTES).await {
                    Ok(Some(config_bytes)) => {
                        page.config_info = manifest::config_facts(&config_bytes)
                            .map(|(platform, created)| ConfigInfo { platform, created });
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(repository = %name, digest = %c.digest, error = %e, "reading an image config for the web UI failed")
                    }
                }
                page.config = Some(descriptor_row(name, c));
            }
            let total: u64 = layers.iter().map(|l| l.size).fold(0, u64::saturating_add);
            page.layers_size_text = super::views::size_text(total);
            page.layers = layers.iter().map(|l| descriptor_row(name, l)).collect();
        }
        Parsed::Index { manifests } => {
            page.children = manifests.iter().map(|m| descriptor_row(name, m)).collect();
        }
        Parsed::Other => {
            page.unavailable = Some("This manifest's format is not described here.");
        }
    }
    Ok(html(StatusCode::OK, &page))
}

/// What the settings page shows besides the stored values after a refused action.
#[derive(Default)]
pub(super) struct SettingsState {
    pub error: Option<String>,
    /// The description as submitted, when it was refused.
    pub description: Option<String>,
    pub collaborator: String,
    /// The webhook form's URL and events as submitted, when they were refused (never the
    /// secret: it is typed again).
    pub webhook: Option<(String, Vec<WebhookEvent>)>,
}

/// `/r/<name>/-/settings?page=`.
pub(super) async fn settings(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
    query: &[(String, String)],
) -> PageResult {
    settings_page(
        index,
        viewer,
        name,
        page_number(query, "page"),
        notice(query),
        StatusCode::OK,
        SettingsState::default(),
    )
    .await
}

/// The settings page of `name` for a viewer who manages it (403/404 otherwise).
pub(super) async fn settings_page(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
    page: usize,
    notice: Option<&'static str>,
    status: StatusCode,
    state: SettingsState,
) -> PageResult {
    let webhooks_on = index.webhooks.clone();
    let (repo, collaborators, hooks) = {
        let (index, who, name) = (index.clone(), viewer.identity.clone(), name.to_owned());
        let hooks_on = webhooks_on.is_some();
        tokio::task::spawn_blocking(move || -> Result<_, PageError> {
            let repo = manage::managed_repository(&index, &who, &name)?;
            let collaborators = index.store.collaborators(&name)?;
            let hooks = if hooks_on {
                hooks_with_deliveries(&index, &name)?
            } else {
                Vec::new()
            };
            Ok((repo, collaborators, hooks))
        })
        .await??
    };
    let settings_href = format!("/r/{name}/-/settings");
    let (collaborator_pager, range) =
        Pager::new(collaborators.len(), page, "Collaborator pages", |n| {
            format!("{settings_href}?page={n}#collaborators-heading")
        });
    let page = SettingsPage {
        layout: viewer.layout(index, "", notice),
        description_value: state
            .description
            .unwrap_or_else(|| repo.description.clone()),
        repo: RepoView::new(&repo, true),
        error: state.error,
        max_description: MAX_DESCRIPTION,
        collaborators: collaborators[range]
            .iter()
            .map(CollaboratorRow::new)
            .collect(),
        collaborator_pager,
        collaborator_value: state.collaborator,
        deletes_allowed: index.auth.state().deletes_allowed(),
        webhooks: webhooks_on.map(|on| {
            let (url_value, events) = state
                .webhook
                .unwrap_or_else(|| (String::new(), vec![WebhookEvent::Push]));
            WebhooksView {
                hooks: hooks
                    .iter()
                    .map(|(hook, deliveries)| {
                        HookRow::new(name, hook, deliveries, DELIVERIES_SHOWN)
                    })
                    .collect(),
                max_hooks: MAX_HOOKS_PER_REPOSITORY,
                shown: DELIVERIES_SHOWN,
                history_days: HISTORY_DAYS,
                allow_http: on.allow_http(),
                action: format!("/r/{name}/-/webhooks"),
                url_value,
                push_checked: events.contains(&WebhookEvent::Push),
                delete_checked: events.contains(&WebhookEvent::Delete),
            }
        }),
    };
    Ok(html(status, &page))
}

/// The repository's hooks, each with its latest deliveries (one more than are shown,
/// which tells whether there are older ones).
fn hooks_with_deliveries(
    index: &EmbeddedIndex,
    name: &str,
) -> Result<Vec<(Webhook, Vec<Delivery>)>, StoreError> {
    index
        .store
        .webhooks(name)?
        .into_iter()
        .map(|hook| {
            let deliveries = index
                .store
                .deliveries(&HookRef::Repository(hook.id), DELIVERIES_SHOWN + 1)?;
            Ok((hook, deliveries))
        })
        .collect()
}

/// `GET /r/<name>/-/tags/<tag>/delete`: asks before deleting.
pub(super) async fn delete_tag_confirm(
    index: &Arc<EmbeddedIndex>,
    viewer: &Viewer,
    name: &str,
    tag: &str,
) -> PageResult {
    let (repo, record) = {
        let (index, who, name, tag) = (
            index.clone(),
            viewer.identity.clone(),
            name.to_owned(),
            tag.to_owned(),
        );
        tokio::task::spawn_blocking(move || -> Result<_, PageError> {
            let repo = manage::managed_repository(&index, &who, &name)?;
            let record = index.store.tags(&name)?.into_iter().find(|t| t.tag == tag);
            Ok((repo, record))
        })
        .await??
    };
    if !index.auth.state().deletes_allowed() {
        return Err(manage::ManageError::DeletesDisabled.into());
    }
    if index.local_registry.is_none() {
        return Err(manage::ManageError::NoLocalRegistry.into());
    }
    let record = record.ok_or(PageError::NotFound)?;
    let page = DeleteTagPage {
        layout: viewer.layout(index, "", None),
        repo: RepoView::new(&repo, true),
        action: format!("/r/{name}/-/tags/{tag}/delete"),
        tag: record.tag,
        digest: record.digest,
    };
    Ok(html(StatusCode::OK, &page))
}
