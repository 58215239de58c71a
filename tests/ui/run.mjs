// Browser tests of holdfast's web UI: headless Chromium (Debian's /usr/bin/chromium)
// driven by playwright-core. tests/web_ui.rs starts the server, pushes the content and
// runs this script with the address, users and repository names in the environment.
// Every check prints `ok` or `FAIL`; the script exits non-zero when any failed.
//
// TLS without turning verification off: Chromium gets the SHA-256 of the server
// certificate's public key (`--ignore-certificate-errors-spki-list`), so it accepts that
// one certificate and no other; requests made from Node (the CSRF checks) trust the
// server's CA through NODE_EXTRA_CA_CERTS, which the Rust test sets.

import { chromium, request } from 'playwright-core';
import { createHash, X509Certificate } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

function env(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`run.mjs: ${name} is not set (tests/web_ui.rs sets it)`);
    process.exit(2);
  }
  return v;
}

function credentials(name) {
  const [user, ...rest] = env(name).split(':');
  return { user, password: rest.join(':') };
}

const base = env('HOLDFAST_UI_URL');
const host = env('HOLDFAST_UI_HOST');
const artifacts = env('HOLDFAST_UI_ARTIFACTS');
const owner = credentials('HOLDFAST_UI_OWNER');
const stranger = credentials('HOLDFAST_UI_STRANGER');
const collaborator = env('HOLDFAST_UI_COLLABORATOR');
const repo = env('HOLDFAST_UI_REPO');
const publicRepo = env('HOLDFAST_UI_PUBLIC_REPO');
const publicWord = env('HOLDFAST_UI_PUBLIC_WORD');
const privateRepo = env('HOLDFAST_UI_PRIVATE_REPO');
const privateDigest = env('HOLDFAST_UI_PRIVATE_DIGEST');
const multiRepo = env('HOLDFAST_UI_MULTI_REPO');
const multiDigest = env('HOLDFAST_UI_MULTI_DIGEST');
const publicComment = env('HOLDFAST_UI_PUBLIC_COMMENT');
const service = env('HOLDFAST_UI_SERVICE');
const hookUrl = env('HOLDFAST_UI_HOOK_URL');
const hookSecret = env('HOLDFAST_UI_HOOK_SECRET');

const XSS = '<script>alert(1)</script><img src=x onerror=alert(2)>';
const COMMENT_XSS = '<script>alert(1)</script><img src=x onerror=alert(3)>';
const COMMENT = 'Rebuilt on the new base image.\nBoth tags pass the smoke tests.';
const SESSION_COOKIE = '__Host-holdfast-session';

let passed = 0;
let failed = 0;
function check(condition, what, detail) {
  if (condition) {
    passed++;
    console.log(`ok   ${what}`);
  } else {
    failed++;
    console.log(`FAIL ${what}${detail === undefined ? '' : `: ${JSON.stringify(detail)}`}`);
  }
}

async function step(name, fn) {
  console.log(`== ${name}`);
  try {
    await fn();
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
  }
}

const spki = new X509Certificate(readFileSync(env('HOLDFAST_UI_CERT')))
  .publicKey.export({ type: 'spki', format: 'der' });
const pin = createHash('sha256').update(spki).digest('base64');

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    `--ignore-certificate-errors-spki-list=${pin}`,
  ],
});

// Any JavaScript dialog means injected script ran.
const dialogs = [];
async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    d.dismiss().catch(() => {});
  });
  return { context, page };
}

const url = (path) => `${base}${path}`;

async function submit(page, button, urlPattern) {
  await Promise.all([page.waitForURL(urlPattern), button.click()]);
}

async function signIn(page, who) {
  await page.goto(url('/-/signin'));
  await page.getByLabel('User name').fill(who.user);
  await page.getByLabel('Password').fill(who.password);
  await submit(page, page.locator('main form button[type=submit]'), url('/'));
}

async function rowHeaders(page, table) {
  return (await page.locator(`${table} tbody th[scope=row]`).allTextContents()).map((s) => s.trim());
}

async function mainText(page) {
  return (await page.locator('main').innerText()).trim();
}

async function text(locator) {
  return ((await locator.textContent()) || '').trim();
}

// The session's CSRF token, as every form of the page carries it.
async function csrfOf(page) {
  return page.locator('input[name=csrf]').first().inputValue();
}

// Waits until `done()` holds, reloading `page` between tries.
async function eventually(page, done, what, seconds = 30) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    if (await done()) return true;
    if (Date.now() > deadline) {
      console.log(`gave up waiting for ${what}`);
      return false;
    }
    await page.waitForTimeout(500);
    await page.reload();
  }
}

const owners = await newPage();
const anonymous = await newPage();
const strangers = await newPage();
const page = owners.page;

await step('sign in: a wrong password shows a generic error', async () => {
  const first = await page.goto(url('/-/signin'));
  check(first.status() === 200, 'the sign-in page answers 200', first.status());
  const csp = first.headers()['content-security-policy'] || '';
  check(csp.includes("default-src 'none'") && csp.includes("frame-ancestors 'none'"), 'pages carry the CSP', csp);
  await page.getByLabel('User name').fill(owner.user);
  await page.getByLabel('Password').fill(`${owner.password}-wrong`);
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url() === url('/-/signin') && r.request().method() === 'POST'),
    page.locator('main form button[type=submit]').click(),
  ]);
  await page.waitForLoadState();
  check(response.status() === 403, 'a wrong password is refused', response.status());
  const error = (await page.locator('#signin-error').textContent()) || '';
  check(error.includes('Wrong user name or password'), 'the error is generic', error);
  check((await page.getByLabel('User name').inputValue()) === owner.user, 'the user name is kept');
  check((await page.getByLabel('Password').inputValue()) === '', 'the password is not sent back');
});

await step('sign in: the right password starts a session', async () => {
  await page.getByLabel('Password').fill(owner.password);
  await submit(page, page.locator('main form button[type=submit]'), url('/'));
  const who = (await page.locator('header .who').innerText()) || '';
  check(who.includes(`Signed in as ${owner.user}`), 'the header names the user', who);
  const cookies = await owners.context.cookies(base);
  const session = cookies.find((c) => c.name === SESSION_COOKIE);
  check(!!session, 'a session cookie is set', cookies.map((c) => c.name));
  if (session) {
    check(session.httpOnly && session.secure && session.sameSite === 'Strict' && session.path === '/',
      'the session cookie is HttpOnly, Secure, SameSite=Strict, Path=/', session);
  }
  const listed = await rowHeaders(page, 'table.list');
  check(listed.includes(privateRepo) && listed.includes(repo), 'the owner sees her private repositories', listed);
});

await step('search finds a public repository by its description', async () => {
  await page.getByLabel('Search repositories by name or description').fill(publicWord);
  await submit(page, page.getByRole('button', { name: 'Search' }), /\?q=/);
  const listed = await rowHeaders(page, 'table.list');
  check(listed.length === 1 && listed[0] === publicRepo, 'only the matching repository is listed', listed);
  const anon = await anonymous.page.goto(url(`/?q=${publicWord}`));
  check(anon.status() === 200, 'anonymous search answers 200');
  check((await rowHeaders(anonymous.page, 'table.list')).includes(publicRepo), 'anonymous callers find it too');
});

await step('repository page: tags, digests, sizes, media types, the pull command', async () => {
  const r = await page.goto(url(`/r/${repo}`));
  check(r.status() === 200, 'the repository page answers 200', r.status());
  const tags = await rowHeaders(page, 'table.tags');
  check(JSON.stringify(tags) === JSON.stringify(['latest', 'old', 'v1']), 'every tag is listed', tags);
  check((await page.locator('#pull-command').inputValue()) === `docker pull ${host}/${repo}:latest`,
    'the pull command names the registry host and the latest tag');
  const pulls = await page.locator('table.tags code.pull').allTextContents();
  check(pulls.includes(`docker pull ${host}/${repo}:v1`), 'each tag has its pull command', pulls);
  const digest = page.locator('table.tags a.digest').first();
  check(((await digest.getAttribute('title')) || '').startsWith('sha256:'), 'the full digest is in the title');
  const body = await page.locator('table.tags').innerText();
  check(body.includes('application/vnd.oci.image.manifest.v1+json'), 'media types are shown');
  check(/\d+(\.\d)? (B|KiB)/.test(body), 'sizes are human-readable');
});

await step('a multi-arch index shows its platforms; the manifest pages show config and layers', async () => {
  await page.goto(url(`/r/${multiRepo}`));
  const platforms = await page.locator('table.tags ul.platforms li').allTextContents();
  check(platforms.includes('linux/amd64') && platforms.includes('linux/arm64/v8'), 'platforms of the index', platforms);
  mkdirSync(artifacts, { recursive: true });
  const shot = join(artifacts, 'repository.png');
  await page.screenshot({ path: shot, fullPage: true });
  const [scrollWidth, viewWidth] = await page.evaluate(() => [document.documentElement.scrollWidth, innerWidth]);
  check(scrollWidth <= viewWidth, 'the page fits the window without scrolling sideways', [scrollWidth, viewWidth]);
  console.log(`screenshot: ${shot}`);
  if (process.env.HOLDFAST_UI_SCREENSHOT_UPDATE === '1') {
    const committed = fileURLToPath(new URL('./repository-page.png', import.meta.url));
    copyFileSync(shot, committed);
    console.log(`screenshot copied to ${committed}`);
  }
  const r = await page.goto(url(`/r/${multiRepo}/-/manifests/${multiDigest}`));
  check(r.status() === 200, 'the index manifest page answers 200');
  const children = await rowHeaders(page, 'table.list');
  check(children.includes('linux/amd64') && children.includes('linux/arm64/v8'), 'the index lists its manifests by platform', children);
  await submit(page, page.locator('table.list a.digest').first(), /\/-\/manifests\/sha256:/);
  const text = await mainText(page);
  check(text.includes('Config') && text.includes('Layers'), 'an image manifest page shows config and layers');
  check(text.includes('linux/amd64'), "the config's platform is read");
  check((await page.locator('#layers-heading + div table tbody tr').count()) === 2, 'both layers are listed');
});

await step('change visibility', async () => {
  await page.goto(url(`/r/${repo}/-/settings`));
  await page.getByRole('radio', { name: /Public/ }).check();
  await submit(page, page.getByRole('button', { name: 'Save visibility' }), /done=visibility/);
  check(((await page.locator('.notice').textContent()) || '').includes('Visibility saved'), 'a notice confirms');
  check(((await page.locator('h1 .badge').textContent()) || '').trim() === 'public', 'the badge says public');
  let r = await anonymous.page.goto(url(`/r/${repo}`));
  check(r.status() === 200, 'anonymous callers now see it', r.status());
  await page.getByRole('radio', { name: /Private/ }).check();
  await submit(page, page.getByRole('button', { name: 'Save visibility' }), /done=visibility/);
  check(((await page.locator('h1 .badge').textContent()) || '').trim() === 'private', 'back to private');
  r = await anonymous.page.goto(url(`/r/${repo}`));
  check(r.status() === 404, 'anonymous callers no longer see it', r.status());
});

await step('add a collaborator', async () => {
  await page.goto(url(`/r/${repo}/-/settings`));
  await page.getByLabel('User name').fill('no-such-user');
  await submit(page, page.getByRole('button', { name: 'Add or change collaborator' }), /\/-\/collaborators$/);
  const error = (await page.locator('#settings-error').textContent()) || '';
  check(error.includes('There is no user named'), 'an unknown user is refused with a message', error);
  await page.getByLabel('User name').fill(collaborator);
  await page.getByLabel('Access').selectOption('push');
  await submit(page, page.getByRole('button', { name: 'Add or change collaborator' }), /done=collaborator-added/);
  const rows = await page.locator('#collaborators-heading ~ table tbody tr').allInnerTexts();
  check(rows.some((r) => r.includes(collaborator) && r.includes('push')), 'the collaborator is listed with push access', rows);
});

await step('descriptions with markup are shown as text', async () => {
  await page.goto(url(`/r/${repo}/-/settings`));
  await page.getByRole('textbox', { name: /^Description/ }).fill(XSS);
  await submit(page, page.getByRole('button', { name: 'Save description' }), /done=description/);
  check((await page.getByRole('textbox', { name: /^Description/ }).inputValue()) === XSS, 'the textarea holds the text as typed');
  await page.goto(url(`/r/${repo}`));
  check((await page.locator('#description').textContent()) === XSS, 'the description is shown verbatim');
  check((await page.locator('img').count()) === 0, 'no img element was created');
  check((await page.locator('script').count()) === 0, 'no script element was created');
  await page.goto(url(`/?q=${encodeURIComponent('app')}`));
  check((await page.locator('img, script').count()) === 0, 'the list shows it as text too');
  await page.goto(url(`/?q=${encodeURIComponent(XSS)}`));
  check(((await page.locator('h1').textContent()) || '').includes(XSS), 'a search query is shown as text');
  check((await page.locator('img, script').count()) === 0, 'and creates no elements');
  await page.waitForTimeout(300);
  check(dialogs.length === 0, 'no dialog fired', dialogs);
});

await step('delete a tag, with confirmation', async () => {
  await page.goto(url(`/r/${repo}`));
  await submit(page, page.getByRole('link', { name: 'Delete tag old' }), /\/-\/tags\/old\/delete$/);
  check(((await page.locator('h1').textContent()) || '').includes('Delete tag old'), 'a confirmation page asks first');
  await submit(page, page.getByRole('button', { name: 'Delete tag old' }), /done=tag-deleted/);
  check(((await page.locator('.notice').textContent()) || '').includes('Tag deleted'), 'a notice confirms');
  const tags = await rowHeaders(page, 'table.tags');
  check(JSON.stringify(tags) === JSON.stringify(['latest', 'v1']), 'the tag is gone', tags);
});

await step('star and unstar: the count follows, and the home page lists your stars', async () => {
  await page.goto(url(`/r/${repo}`));
  check((await text(page.locator('#star-count'))) === '0 stars', 'no stars yet', await text(page.locator('#star-count')));
  await submit(page, page.getByRole('button', { name: /^Star\b/ }), /done=starred/);
  check((await text(page.locator('#star-count'))) === '1 star', 'starring counts', await text(page.locator('#star-count')));
  check((await page.getByRole('button', { name: /^Unstar\b/ }).count()) === 1, 'the button now unstars');
  await page.goto(url('/'));
  const starred = await rowHeaders(page, 'table.starred');
  check(starred.includes(repo), '"Your stars" lists it', starred);
  await page.screenshot({ path: join(artifacts, 'home-stars.png'), fullPage: true });
  const cell = page.locator('table.repos tbody tr', { has: page.getByRole('link', { name: repo, exact: true }) }).locator('td.stars');
  check((await text(cell)) === '1', 'the list shows its star count', await text(cell));
  await page.goto(url(`/r/${repo}`));
  await submit(page, page.getByRole('button', { name: /^Unstar\b/ }), /done=unstarred/);
  check((await text(page.locator('#star-count'))) === '0 stars', 'unstarring counts down', await text(page.locator('#star-count')));
  await page.goto(url('/'));
  check(!(await rowHeaders(page, 'table.starred')).includes(repo), 'and it leaves "Your stars"');
});

await step('comments: posted, shown newest first as plain text with their line breaks', async () => {
  await page.goto(url(`/r/${repo}`));
  check((await page.locator('#no-comments').count()) === 1, 'no comments yet');
  const box = page.getByRole('textbox', { name: /^Add a comment/ });
  await box.fill(COMMENT);
  await submit(page, page.getByRole('button', { name: 'Post comment' }), /done=comment-posted/);
  let first = page.locator('ol.comments li.comment').first();
  check((await text(first.locator('.author'))) === owner.user, 'the author is shown');
  check(((await first.locator('time').getAttribute('datetime')) || '').endsWith('Z'), 'and the time');
  const body = first.locator('.comment-body');
  check((await body.textContent()) === COMMENT, 'the text is kept exactly', await body.textContent());
  check((await body.innerText()) === COMMENT, 'its line break shows', await body.innerText());
  check((await body.evaluate((e) => getComputedStyle(e).whiteSpace)) === 'pre-wrap', 'by CSS white-space: pre-wrap');
  check((await body.locator('*').count()) === 0, 'with no markup inside');

  await box.fill(COMMENT_XSS);
  await submit(page, page.getByRole('button', { name: 'Post comment' }), /done=comment-posted/);
  const bodies = await page.locator('ol.comments .comment-body').allTextContents();
  check(JSON.stringify(bodies) === JSON.stringify([COMMENT_XSS, COMMENT]), 'newest first, markup shown as text', bodies);
  check((await page.locator('img').count()) === 0, 'no img element was created');
  check((await page.locator('script').count()) === 0, 'no script element was created');
  await page.waitForTimeout(300);
  check(dialogs.length === 0, 'no dialog fired', dialogs);
});

await step('comments: an empty one is refused with a clear message, the text kept', async () => {
  await page.goto(url(`/r/${repo}`));
  await page.getByRole('textbox', { name: /^Add a comment/ }).fill('   \n  ');
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url() === url(`/r/${repo}/-/comments`) && r.request().method() === 'POST'),
    page.getByRole('button', { name: 'Post comment' }).click(),
  ]);
  await page.waitForLoadState();
  check(response.status() === 400, 'answered 400', response.status());
  const error = await text(page.locator('#comment-error'));
  check(error.includes('the comment is empty'), 'the reason is shown by the form', error);
  check((await page.locator('ol.comments li.comment').count()) === 2, 'nothing was posted');
});

await step("the owner deletes another user's comment", async () => {
  await page.goto(url(`/r/${publicRepo}`));
  const theirs = page.locator('ol.comments li.comment', { hasText: publicComment });
  check((await theirs.count()) === 1, "the other user's comment is listed");
  await submit(page, theirs.getByRole('button', { name: /^Delete/ }), /done=comment-deleted/);
  check((await text(page.locator('.notice'))).includes('Comment deleted'), 'a notice confirms');
  check((await page.locator('ol.comments li.comment', { hasText: publicComment }).count()) === 0, 'the comment is gone');
});

await step('webhooks: added in the settings, delivered after a push, redelivered', async () => {
  await page.goto(url(`/r/${repo}/-/settings`));
  check((await page.locator('#webhooks-disabled').count()) === 0, 'webhooks are on');
  check((await page.getByRole('checkbox', { name: /^push/ }).isChecked()), 'push is ticked by default');
  // A URL the rules refuse: the reason is shown, the URL kept, the secret not sent back.
  await page.getByLabel(/^Payload URL/).fill('ftp://hooks.example/x');
  await page.getByLabel(/^Secret/).fill(hookSecret);
  await submit(page, page.getByRole('button', { name: 'Add webhook' }), /\/-\/webhooks$/);
  const error = await text(page.locator('#settings-error'));
  check(error.includes('scheme ftp:// is not supported'), 'a refused URL says why', error);
  check((await page.getByLabel(/^Payload URL/).inputValue()) === 'ftp://hooks.example/x', 'the URL is kept');
  check((await page.getByLabel(/^Secret/).inputValue()) === '', 'the secret is not sent back');

  await page.getByLabel(/^Payload URL/).fill(hookUrl);
  await page.getByLabel(/^Secret/).fill(hookSecret);
  await submit(page, page.getByRole('button', { name: 'Add webhook' }), /done=webhook-added/);
  const hook = page.locator('article.hook').first();
  check((await text(hook.locator('.hook-url'))) === hookUrl, 'the hook is listed with its URL');
  check((await hook.innerText()).includes('push'), 'and its events');
  check((await hook.innerText()).includes(`by ${owner.user}`), 'and who added it');
  check(!(await page.content()).includes(hookSecret), 'its secret is shown nowhere');
  check((await hook.innerText()).includes('No deliveries yet'), 'no deliveries yet');

  // A push through the registry API, with a token.
  const api = await request.newContext();
  const basic = Buffer.from(`${owner.user}:${owner.password}`).toString('base64');
  const scope = encodeURIComponent(`repository:${repo}:pull,push`);
  const answer = await api.get(url(`/token?service=${encodeURIComponent(service)}&scope=${scope}`), {
    headers: { authorization: `Basic ${basic}` },
  });
  check(answer.status() === 200, 'a push token', answer.status());
  const { token } = await answer.json();
  const auth = { authorization: `Bearer ${token}` };
  const manifest = await api.get(url(`/v2/${repo}/manifests/v1`), {
    headers: { ...auth, accept: 'application/vnd.oci.image.manifest.v1+json' },
  });
  const pushed = await api.put(url(`/v2/${repo}/manifests/hooked`), {
    headers: { ...auth, 'content-type': manifest.headers()['content-type'] },
    data: await manifest.body(),
  });
  check(pushed.status() === 201, 'the push is accepted', pushed.status());
  await api.dispose();

  const row = () => page.locator('article.hook').first().locator('table.deliveries tbody tr');
  const delivered = await eventually(page, async () => (await row().count()) === 1
    && (await text(row().first().locator('.status'))) === 'delivered', 'the delivery');
  check(delivered, 'the delivery shows as delivered');
  const cells = await row().first().locator('td').allTextContents();
  check(cells[0] === 'push' && cells[2] === '200' && cells[3] === '1', 'with its event, response and attempts', cells);

  await submit(page, page.getByRole('button', { name: /^Redeliver/ }), /done=redelivered/);
  check((await text(page.locator('.notice'))).includes('sent again'), 'a notice confirms the redelivery');
  const again = await eventually(page, async () => (await row().count()) === 1
    && (await text(row().first().locator('.status'))) === 'delivered', 'the redelivery');
  check(again, 'the same delivery is delivered again');
  await page.screenshot({ path: join(artifacts, 'settings-webhooks.png'), fullPage: true });

  // A second hook, removed again.
  await page.getByLabel(/^Payload URL/).fill(`${hookUrl}?second`);
  await page.getByLabel(/^Secret/).fill(hookSecret);
  await page.getByRole('checkbox', { name: /^push/ }).uncheck();
  await page.getByRole('checkbox', { name: /^delete/ }).check();
  await submit(page, page.getByRole('button', { name: 'Add webhook' }), /done=webhook-added/);
  check((await page.locator('article.hook').count()) === 2, 'a second hook is listed');
  const second = page.locator('article.hook').nth(1);
  check((await second.innerText()).includes('delete'), 'with the events ticked');
  await submit(page, second.getByRole('button', { name: /^Remove/ }), /done=webhook-removed/);
  check((await page.locator('article.hook').count()) === 1, 'removing it leaves the first');
});

await step('a POST without the CSRF token is refused', async () => {
  const form = { visibility: 'public' };
  let r = await owners.context.request.post(url(`/r/${repo}/-/visibility`), { form, maxRedirects: 0 });
  check(r.status() === 403, 'no token: 403', r.status());
  check((await r.text()).includes('Form refused'), 'with a clear page');
  r = await owners.context.request.post(url(`/r/${repo}/-/visibility`), {
    form: { ...form, csrf: 'A'.repeat(43) }, maxRedirects: 0,
  });
  check(r.status() === 403, 'a wrong token: 403', r.status());
  r = await owners.context.request.post(url('/-/signout'), { form: {}, maxRedirects: 0 });
  check(r.status() === 403, 'sign-out without the token: 403', r.status());
  r = await owners.context.request.post(url(`/r/${repo}/-/comments`), { form: { body: 'forged comment' }, maxRedirects: 0 });
  check(r.status() === 403, 'the comment form without the token: 403', r.status());
  r = await owners.context.request.post(url(`/r/${repo}/-/star`), { form: {}, maxRedirects: 0 });
  check(r.status() === 403, 'the star form without the token: 403', r.status());
  await page.goto(url(`/r/${repo}`));
  check(!(await mainText(page)).includes('forged comment'), 'no comment was posted');
  check((await text(page.locator('#star-count'))) === '0 stars', 'no star was added');
  const anon = await anonymous.page.goto(url(`/r/${repo}`));
  check(anon.status() === 404, 'nothing changed: the repository is still private', anon.status());
});

await step("a stranger's session sees the private repository nowhere", async () => {
  const p = strangers.page;
  await signIn(p, stranger);
  const listed = await rowHeaders(p, 'table.list');
  check(!listed.includes(privateRepo) && !listed.includes(repo), 'not in the list', listed);
  check(listed.includes(publicRepo), 'public repositories are listed', listed);
  await p.goto(url(`/?q=${encodeURIComponent(privateRepo.split('/')[1])}`));
  check((await p.locator('table.list').count()) === 0, 'not in search results');
  const missing = await p.goto(url('/r/alice/no-such-repository'));
  const missingText = await mainText(p);
  check(missing.status() === 404, 'a missing repository is 404');
  for (const path of [
    `/r/${privateRepo}`,
    `/r/${privateRepo}/-/manifests/${privateDigest}`,
    `/r/${privateRepo}/-/settings`,
  ]) {
    const r = await p.goto(url(path));
    check(r.status() === 404, `${path}: 404`, r.status());
    check((await mainText(p)) === missingText, `${path}: the same page as a missing repository`);
  }
  // Nor its stars or comments: the forms answer what a missing repository answers.
  const csrf = await csrfOf(p);
  for (const [path, form] of [
    [`/r/${privateRepo}/-/star`, {}],
    [`/r/${privateRepo}/-/unstar`, {}],
    [`/r/${privateRepo}/-/comments`, { body: 'let me in' }],
    [`/r/${privateRepo}/-/comments/1/delete`, {}],
  ]) {
    const answer = await strangers.context.request.post(url(path), { form: { ...form, csrf }, maxRedirects: 0 });
    check(answer.status() === 404, `POST ${path}: 404`, answer.status());
  }
  const r = await p.goto(url(`/r/${publicRepo}`));
  check(r.status() === 200, 'the public repository is visible');
  check((await p.getByRole('button', { name: /^Star\b/ }).count()) === 1, 'a signed-in stranger may star it');
  check((await p.getByRole('textbox', { name: /^Add a comment/ }).count()) === 1, 'and comment on it');
  const hooks = await strangers.context.request.post(url(`/r/${publicRepo}/-/webhooks`), {
    form: { csrf, url: 'https://hooks.example/x', secret: 'x'.repeat(20), events: 'push' }, maxRedirects: 0,
  });
  check(hooks.status() === 403, 'but not add webhooks to it: 403', hooks.status());
  check((await p.getByRole('link', { name: 'Settings' }).count()) === 0, 'without the settings tab');
  check((await p.getByRole('link', { name: /^Delete/ }).count()) === 0, 'and without delete links');
  const settings = await p.goto(url(`/r/${publicRepo}/-/settings`));
  check(settings.status() === 403, "another's settings: 403", settings.status());
});

await step('sign out ends the session on the server', async () => {
  const before = (await owners.context.cookies(base)).find((c) => c.name === SESSION_COOKIE);
  await page.goto(url('/'));
  await submit(page, page.getByRole('button', { name: 'Sign out' }), /done=signed-out/);
  check(((await page.locator('.notice').textContent()) || '').includes('signed out'), 'a notice confirms');
  check((await page.getByRole('link', { name: 'Sign in' }).count()) === 1, 'the header offers to sign in');
  const listed = await rowHeaders(page, 'table.list');
  check(!listed.includes(privateRepo), 'private repositories are gone from the list', listed);
  // The old cookie, presented again, is worth nothing.
  const replay = await newPage();
  await replay.context.addCookies([{ ...before, expires: -1 }]);
  const r = await replay.page.goto(url(`/r/${privateRepo}`));
  check(r.status() === 404, 'a replayed session cookie is not signed in', r.status());
  await replay.context.close();
});

await browser.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
