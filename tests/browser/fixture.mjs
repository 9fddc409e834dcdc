// Starts a real `payoff serve` on a free loopback port over a fresh data
// directory, seeds a small but complete customer through the HTTP API,
// and writes `logins.json` into the data directory: the contract between
// whatever starts the server and the browser tests (`payoff demo` writes
// the same file).
//
//   node fixture.mjs start [--data-dir DIR] [--bin PATH]   # prints the logins.json path
//   node fixture.mjs stop  [--data-dir DIR]
//
// The binary is PAYOFF_BIN, else target/debug/payoff of this repository
// (CARGO_TARGET_DIR is honoured). Everything is deterministic except the
// dates, which follow today's: the contract starts two months ago, the two
// months before this one are closed, and this month's tickets are worked
// by the support agent now.

import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..", "..");

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

const dataDir = path.resolve(arg("--data-dir", path.join(repo, "artifacts", "browser", "data")));
const targetDir = process.env.CARGO_TARGET_DIR || path.join(repo, "target");
const bin = path.resolve(arg("--bin", process.env.PAYOFF_BIN || path.join(targetDir, "debug", "payoff")));
const pidFile = path.join(dataDir, "server.pid");

const CUSTOMER = "acme";
const GROUP = "finance";
const RESTRICTED_TITLE = "Refund approval limits for staff";
const RESTRICTED_QUERY = "refund approval limit for staff";

/** A seeded generator (mulberry32): the same data on every run. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = rng(20261101);
const pick = (list) => list[Math.floor(random() * list.length)];
const between = (lo, hi) => lo + Math.floor(random() * (hi - lo + 1));

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const monthName = (d) => `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
const monthStart = (offset) => {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + offset, 1));
};
const iso = (d) => d.toISOString().replace(/\.\d{3}Z$/, "Z");
const at = (month, day, hour) => new Date(month.getTime() + ((day - 1) * 24 + hour) * 3600e3);

async function call(base, method, route, key, body, contentType = "application/json") {
  const headers = { authorization: `Bearer ${key}` };
  if (body !== undefined) headers["content-type"] = contentType;
  const response = await fetch(base + route, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${route}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const KNOWLEDGE = [
  { id: "returns", title: "Returning an item", url: "https://help.acme.test/returns",
    body: "# Returns\nYou can return an item within 30 days of delivery. Print the prepaid return label from your account page and drop the parcel at any post office. Returned items must be unused and in their original packaging." },
  { id: "refunds", title: "When will I get my refund?", url: "https://help.acme.test/refunds",
    body: "# Refunds\nRefunds are paid to the original card within five business days after the returned parcel arrives at our warehouse. You get an email when the refund is issued." },
  { id: "shipping", title: "Shipping times and tracking", url: "https://help.acme.test/shipping",
    body: "# Shipping\nStandard delivery takes three to five business days; express delivery takes one to two. Every parcel has a tracking number in the shipping confirmation email. If tracking has not moved for five days, the courier has probably delayed the parcel." },
  { id: "password", title: "Resetting your password", url: "https://help.acme.test/password",
    body: "# Password\nTo reset your password, open the login page and choose Forgot password. We send a reset link to your email address; it is valid for one hour. If your account is locked after too many attempts, wait fifteen minutes." },
  { id: "orders", title: "Changing or cancelling an order", url: "https://help.acme.test/orders",
    body: "# Orders\nYou can change the delivery address or cancel an order until it is packed, usually within two hours of ordering. Open the order in your account and choose Cancel order." },
  { id: "invoices", title: "Invoices and VAT", url: "https://help.acme.test/invoices",
    body: "# Invoices\nEvery order has an invoice with VAT in your account under Orders. Invoices can be downloaded as PDF. A charge on your card appears when the order ships, not when it is placed." },
  { id: "damaged", title: "Damaged or wrong items", url: "https://help.acme.test/damaged",
    body: "# Damaged items\nIf an item arrives damaged or is the wrong item, send us a photo within 14 days and we ship a replacement at once, without waiting for the return." },
  { id: "refund-limits", title: RESTRICTED_TITLE, groups: [GROUP],
    body: "# Refund approval limits\nStaff may approve a refund approval up to 150 USD alone. Refunds above the staff limit need the approval of the finance lead. Goodwill refunds are limited to 50 USD per customer per year." },
];

const QUESTIONS = [
  ["Where is my parcel?", "My package has not arrived and the tracking has not moved for days. Is the delivery delayed?"],
  ["Return a jacket", "How do I return a jacket that does not fit? I need the return label."],
  ["Refund not received", "I returned my boots two weeks ago and I still have no refund on my card."],
  ["Charged twice", "I was charged twice for the same order on my card, please refund one payment."],
  ["Invoice with VAT", "Where can I download the invoice with VAT for my order?"],
  ["Password reset", "I cannot log in, how do I reset my password? My account is locked."],
  ["Cancel my order", "Please cancel my order, I ordered the wrong size an hour ago."],
  ["Damaged tent", "The tent arrived damaged, one pole is broken. What can I do?"],
  ["Wholesale prices", "Do you sell kayaks to clubs at wholesale prices?"],
  ["Change address", "Can I change the delivery address of my order?"],
];

function contract(starts, perTicket) {
  return `[contract]
customer = "${CUSTOMER}"
currency = "USD"
period = "monthly"
starts = "${starts}"
base_fee = "200.00"
cap = "5000.00"
baseline_unit_cost = "30.00"
licence_equivalent = "12000.00"

[[outcome]]
name = "ticket_resolved"
when = 'event.type == "ticket.closed"'
void_when = 'event.type == "ticket.reopened"'
matures_after = "72h"
attribution = { holdout = 0.2, confidence = 0.9, bill = "lower_bound", experiment = "support", min_subjects = 10 }
price = { per_unit = "${perTicket}" }

[[outcome]]
name = "qualified_lead"
when = 'event.type == "lead.stage_changed" && event.data.stage == "SQL"'
matures_after = "24h"
attribution = "direct"
price = { per_unit = "12.00" }
`;
}

/** A past month's business: tickets closed by the AI (some reopened), leads, model calls. */
function pastMonth(month, tag, tickets, leads) {
  const events = [];
  const ev = (id, source, type, subject, time, data) =>
    events.push({ specversion: "1.0", id, source, type, subject, time: iso(time), data });
  for (let i = 1; i <= tickets; i++) {
    const t = `T-${tag}-${i}`;
    const day = between(1, 26);
    const [subject, body] = pick(QUESTIONS);
    ev(`${t}-created`, "helpdesk", "ticket.created", t, at(month, day, between(7, 18)), { subject, body, requester: `customer${i}@example.com` });
    ev(`${t}-llm`, "payoff/agents/support", "llm.call", t, at(month, day, 19), { model: "gpt-4o-mini", input_tokens: between(600, 2400), output_tokens: between(80, 400), agent: "support" });
    ev(`${t}-closed`, "helpdesk", "ticket.closed", t, at(month, day, 20), { resolved_by: random() < 0.8 ? "ai" : "human" });
    if (random() < 0.08) ev(`${t}-reopened`, "helpdesk", "ticket.reopened", t, at(month, day + 1, 9), { reason: "still broken" });
  }
  for (let i = 1; i <= leads; i++) {
    const l = `L-${tag}-${i}`;
    const day = between(1, 25);
    ev(`${l}-created`, "crm", "lead.created", l, at(month, day, 10), { source: "web" });
    if (random() < 0.6) ev(`${l}-sql`, "crm", "lead.stage_changed", l, at(month, day + 1, 11), { stage: "SQL", expected_value: `${between(200, 5000)}.00` });
  }
  return events;
}

async function waitUp(base, child) {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`payoff serve exited with ${child.exitCode}; see ${path.join(dataDir, "server.log")}`);
    try {
      if ((await fetch(`${base}/healthz`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`payoff serve did not answer on ${base}/healthz`);
}

async function start() {
  if (!fs.existsSync(bin)) throw new Error(`no payoff binary at ${bin}: run \`cargo build -p payoff\` or set PAYOFF_BIN`);
  fs.rmSync(dataDir, { recursive: true, force: true });
  fs.mkdirSync(dataDir, { recursive: true });
  const init = execFileSync(bin, ["--data-dir", dataDir, "init"], { encoding: "utf8" });
  const admin = init.trim().split("\n").pop().trim();
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const log = fs.openSync(path.join(dataDir, "server.log"), "a");
  const child = spawn(bin, ["--data-dir", dataDir, "serve", "--listen", `127.0.0.1:${port}`], {
    detached: true,
    stdio: ["ignore", log, log],
  });
  fs.writeFileSync(pidFile, String(child.pid));
  await waitUp(base, child);
  child.unref();

  const key = async (role, customer, groups) =>
    (await call(base, "POST", "/v1/keys", admin, { role, customer, groups })).key;
  await call(base, "POST", "/v1/customers", admin, { id: CUSTOMER, name: "Acme Outdoor Co." });
  await call(base, "POST", "/v1/customers", admin, { id: "globex", name: "Globex Supplies" });
  const keys = {
    admin,
    operator: await key("operator", null),
    customer_admin: await key("customer_admin", CUSTOMER, [GROUP]),
    customer_viewer: await key("customer_viewer", CUSTOMER),
    auditor: await key("auditor", CUSTOMER),
  };
  const agent = await key("agent", CUSTOMER);

  const [m2, m1, m0] = [monthStart(-2), monthStart(-1), monthStart(0)];
  await call(base, "POST", `/v1/customers/${CUSTOMER}/contracts`, keys.operator, contract(iso(m2).slice(0, 10), "0.90"), "application/toml");
  await call(base, "POST", "/v1/knowledge/documents", keys.customer_admin, KNOWLEDGE);

  for (const [month, tag, tickets, leads] of [[m2, "A", 30, 10], [m1, "B", 60, 20]]) {
    await call(base, "POST", "/v1/events", agent, pastMonth(month, tag, tickets, leads), "application/cloudevents-batch+json");
    await call(base, "POST", `/v1/customers/${CUSTOMER}/periods/${monthName(month)}/close`, keys.operator);
  }
  // A second contract version from this month on: the earlier one stays readable.
  await call(base, "POST", `/v1/customers/${CUSTOMER}/contracts`, keys.operator, contract(iso(m2).slice(0, 10), "0.95"), "application/toml");

  // This month: the support agent works the tickets (holdout, drafts,
  // approvals); people and requesters close them afterwards.
  const closeAt = new Date(Math.max(Date.now() - 80 * 3600e3, m0.getTime() + 60e3));
  const later = [];
  for (let i = 1; i <= 80; i++) {
    const id = `T-C-${i}`;
    const [subject, body] = QUESTIONS[i % QUESTIONS.length];
    const handled = await call(base, "POST", "/v1/agents/support/tickets", agent, {
      id, subject, body, requester: `shopper${i}@example.com`, time: iso(new Date(closeAt.getTime() - 3600e3)),
    });
    if (handled.arm === "ai") {
      later.push({ specversion: "1.0", id: `${id}-llm`, source: "payoff/agents/support", type: "llm.call", subject: id,
        time: iso(closeAt), data: { model: "gpt-4o-mini", input_tokens: between(600, 2400), output_tokens: between(80, 400), agent: "support" } });
    }
    // People alone solve fewer tickets than with the agent's drafts.
    const solved = handled.arm === "control" ? random() < 0.45 : random() < 0.8;
    if (solved) {
      later.push({ specversion: "1.0", id: `${id}-closed`, source: "helpdesk", type: "ticket.closed", subject: id,
        time: iso(closeAt), data: { resolved_by: handled.arm === "ai" && handled.status === "replied" ? "ai" : "human" } });
    }
  }
  for (let i = 1; i <= 12; i++) {
    const l = `L-C-${i}`;
    later.push({ specversion: "1.0", id: `${l}-sql`, source: "crm", type: "lead.stage_changed", subject: l,
      time: iso(closeAt), data: { stage: "SQL", expected_value: `${between(200, 5000)}.00` } });
  }
  await call(base, "POST", "/v1/events", agent, later, "application/cloudevents-batch+json");
  await call(base, "PUT", `/v1/customers/${CUSTOMER}/budgets`, keys.operator, {
    customer: { limit: "40.00", warn_at: "30.00" },
    agents: { support: { limit: "25.00" } },
  });

  const logins = {
    url: base,
    customer: CUSTOMER,
    period: monthName(m1),
    keys,
    // `member`: a role whose key is in the group (beyond the contract, for a positive check).
    restricted: { group: GROUP, article_title: RESTRICTED_TITLE, query: RESTRICTED_QUERY, member: "customer_admin" },
  };
  const file = path.join(dataDir, "logins.json");
  fs.writeFileSync(file, JSON.stringify(logins, null, 2) + "\n");
  console.log(file);
}

function stop() {
  if (!fs.existsSync(pidFile)) return;
  const pid = Number(fs.readFileSync(pidFile, "utf8"));
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    // already gone
  }
  fs.rmSync(pidFile);
}

const command = process.argv[2];
if (command === "start") {
  start().catch((e) => {
    console.error(`fixture: ${e.message}`);
    stop();
    process.exit(1);
  });
} else if (command === "stop") {
  stop();
} else {
  console.error("usage: node fixture.mjs start|stop [--data-dir DIR] [--bin PATH]");
  process.exit(2);
}
