// The console in a real browser (headless Chromium): what an operator does
// from signing in to draining an agent, checking what is on the page at
// each step, with a screenshot of each. Settings (environment):
//   HERALD_HTTP     the control plane's HTTP listener, http://host:port
//   HERALD_API_KEY  an admin key
//   RECEIVER_URL    a receiver that answers 500 to the event with seq 2
//   SHOTS           where screenshots go
// Exits non-zero, saying what failed, on the first wrong step.
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";

const require = createRequire(`${process.env.PLAYWRIGHT_DIR}/node_modules/`);
const { chromium } = require("playwright-core");

const base = process.env.HERALD_HTTP;
const key = process.env.HERALD_API_KEY;
const receiver = process.env.RECEIVER_URL;
const shots = process.env.SHOTS;
mkdirSync(shots, { recursive: true });
const WAIT = 20000;

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

/** A publish through the JSON API, as curl would send it. */
async function publish(seq) {
  const r = await fetch(`${base}/api/herald.v1.PublishService/Publish`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ tenant_id: "acme", event_type: "order.created", payload_json: JSON.stringify({ seq }) }),
  });
  const answer = await r.json();
  check(r.status === 200 && answer.endpoints_matched === 1, `publish ${seq}: ${r.status} ${JSON.stringify(answer)}`);
}

/** The log's one row with `status`, reloading the page until it shows. */
async function rowOf(page, status) {
  const row = page.locator(`tr.delivery[data-status=${status}]`);
  for (let i = 0; i < 100; i++) {
    await page.reload();
    await page.waitForSelector("#deliveries tr");
    const n = await row.count();
    if (n > 0) {
      check(n === 1, `one ${status} delivery, not ${n}`);
      return row;
    }
    await page.waitForTimeout(100);
  }
  throw new Error(`check failed: no ${status} delivery in the log`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const dialogs = [];
const pageErrors = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(WAIT);
  page.on("dialog", (d) => {
    dialogs.push(d.message());
    d.accept();
  });
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  const shot = (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });

  // The page's own safety: a CSP allowing scripts from here only.
  const first = await page.goto(`${base}/`);
  const csp = first.headers()["content-security-policy"] || "";
  check(csp.includes("script-src 'self'") && !csp.includes("unsafe-inline"), `CSP: ${csp}`);

  // Sign in.
  await page.fill("input[name=key]", key);
  await page.click("button[type=submit]");
  await page.waitForSelector("#tenants");
  check(!(await page.isHidden("#nav")), "the navigation shows once signed in");

  // A tenant whose name is markup: it shows as text.
  const hostile = "<img src=x onerror=alert(1)>";
  await page.fill("input[name=tenant-id]", "acme");
  await page.fill("input[name=tenant-name]", hostile);
  await page.click("form button[type=submit]");
  await page.waitForSelector("#tenants a:text-is('acme')");
  check((await page.locator("#tenants img").count()) === 0, "no img element from the tenant name");
  check((await page.textContent("#tenants")).includes(hostile), "the name shows as text");
  await shot("tenants");

  // An endpoint, created disabled; its secret is shown once; then on.
  await page.click("#tenants a:text-is('acme')");
  await page.waitForSelector("#endpoints");
  await page.fill("input[name=endpoint-name]", "orders");
  await page.fill("input[name=endpoint-url]", `${receiver}/hook`);
  await page.fill("input[name=endpoint-types]", "order.*");
  await page.click("form button[type=submit]");
  const secret = await page.textContent("#new-secret");
  check(secret.startsWith("whsec_"), `the secret is shown once: ${secret}`);
  const row = page.locator("#endpoints tr[data-endpoint]");
  await row.locator(".state-disabled").waitFor();
  const endpoint = await row.getAttribute("data-endpoint");
  await row.locator("button.toggle").click();
  await page.waitForSelector("#endpoints .state-enabled");
  await shot("endpoints");
  check(!(await page.textContent("body")).includes(secret), "the secret is gone once the page changes");

  // A publish through the JSON API reaches the log; its attempt expands.
  await publish(1);
  await page.goto(`${base}/#/t/acme/e/${endpoint}`);
  const ok = await rowOf(page, "succeeded");
  await ok.locator("button.expand").click();
  await page.locator("details.attempt summary").first().click();
  check((await page.textContent("details.attempt")).includes("status 200"), "the attempt shows the 200");
  check((await page.textContent("pre.payload")).includes('"seq": 1'), "the payload shows");
  check((await page.textContent("pre.request-headers")).includes("webhook-signature"), "the request headers show");

  // The receiver fails the next event: a failed attempt and a retry show.
  await publish(2);
  const failing = await rowOf(page, "retrying");
  check((await failing.textContent()).includes("next "), "with when it is retried");
  await failing.locator("button.expand").click();
  await page.waitForSelector("details.attempt");
  check((await page.textContent("tr.detail:not([hidden])")).includes("status 500"), "the failed attempt shows the 500");
  const bars = await page.locator("#chart rect.bar-succeeded").count();
  check(bars >= 1, "the chart has a bar of succeeded deliveries");
  check((await page.locator("#chart rect.bar-retrying").count()) >= 1, "and one of retrying ones");
  await shot("endpoint");

  // Edit: a common field, then any setting through the JSON form; a bad
  // value gets the server's message naming the field.
  await page.fill("input[name=edit-name]", "orders v2");
  await page.click("#edit-common button[type=submit]");
  await page.waitForSelector("#saved");
  check((await page.textContent("h1")).includes("orders v2"), "the new name shows");
  await page.click("#edit-json summary");
  const spec = JSON.parse(await page.inputValue("textarea[name=edit-json]"));
  spec.timeout_ms = 1;
  await page.fill("textarea[name=edit-json]", JSON.stringify(spec));
  await page.click("#edit-json button[type=submit]");
  await page.waitForSelector("#page-message .error");
  check((await page.textContent("#page-message .error")).includes("spec.timeout_ms"), "the error names the field");
  spec.timeout_ms = 30000;
  spec.labels = { team: "billing" };
  await page.fill("textarea[name=edit-json]", JSON.stringify(spec));
  await page.click("#edit-json button[type=submit]");
  await page.waitForSelector("#saved");
  const saved = await fetch(`${base}/api/herald.v1.EndpointService/GetEndpoint`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ tenant_id: "acme", id: endpoint }),
  }).then((r) => r.json());
  check(saved.spec.timeout_ms === 30000 && saved.spec.labels.team === "billing", `saved: ${JSON.stringify(saved.spec)}`);

  // Resend the delivered one.
  await ok.locator("button.expand").click();
  await ok.locator("xpath=following-sibling::tr[1]").locator("button.resend").click();
  await page.waitForSelector("#resent");

  // The cluster: drain the agent.
  await page.goto(`${base}/#/cluster`);
  await page.waitForSelector("#agents tr[data-agent]");
  check((await page.textContent("#agents")).includes("active"), "the agent is active");
  await page.click("#agents button.drain");
  await page.waitForSelector("#agents td.agent-state:text-is('draining')");
  await shot("cluster");

  // The catalog by group, and API keys: a new key is shown once.
  await page.goto(`${base}/#/catalog`);
  await page.waitForSelector("section h2:text-is('order')");
  check((await page.textContent("main")).includes("herald.endpoint.disabled"), "Herald's own types are listed");
  await page.goto(`${base}/#/keys`);
  await page.fill("input[name=key-name]", "ci");
  await page.fill("input[name=key-scopes]", "publish");
  await page.click("form button[type=submit]");
  const newKey = await page.textContent(".notice .secret");
  check(newKey.startsWith("hk_"), `the new key is shown once: ${newKey}`);
  check((await page.textContent("table")).includes("ci"), "the key is listed");
  check(!(await page.textContent("table")).includes(newKey), "but not its secret");

  check((await page.context().cookies()).length === 0, "no cookies");
  check(dialogs.length === 1 && dialogs[0].startsWith("Drain agent"), `only the drain confirmation: ${JSON.stringify(dialogs)}`);
  check(pageErrors.length === 0, `no page errors: ${pageErrors.join("; ")}`);
  console.log("console test passed");
} catch (e) {
  // What the page showed when it went wrong.
  for (const p of browser.contexts().flatMap((c) => c.pages())) {
    await p.screenshot({ path: `${shots}/failure.png`, fullPage: true }).catch(() => {});
    console.error(`page ${p.url()}:\n${await p.textContent("main").catch(() => "")}`);
  }
  throw e;
} finally {
  await browser.close();
}
