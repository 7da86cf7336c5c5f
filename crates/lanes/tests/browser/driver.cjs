// Drives a page in Debian's headless Chromium through Playwright, for the dashboard's
// tests: one JSON command per line on stdin, one JSON answer per line on stdout.
//   {"do":"open","url":U}                       -> {"cells":{...},"login":bool,"loadedAt":N,
//                                                  "firstMapMs":N,"cellCount":N}
//   {"do":"wait","cell":C,"contains":T,"ms":N}  -> {"ok":bool,"elapsedMs":N,"cells":{...},"loadedAt":N}
//   {"do":"release","id":ID,"contains":T,"ms":N} -> {"ok":bool,"text":S,"controls":[...]}
//   {"do":"click","id":ID,"control":C}          -> {"outcome":S} (the confirmation accepted)
//   {"do":"post","path":P,"method":M}           -> {"status":N,"body":{...}} (with the page's token;
//                                                  POST unless M is given)
//   {"do":"path","lane":L,"trace":T}            -> {"said":S,"hops":[{service,version,fallback,depth}],"recent":[...]}
//   {"do":"traffic"}                            -> {"rps":{cell:N},"text":{cell:S},"window":{cell:[from,to]}}
//   {"do":"keys","id":ID,"control":C,"width":W} -> {"tabs":N,"asked":S,"outcome":S,"overflow":N}
//                                                  (a W px wide window; Tab to the control, Enter)
//   {"do":"blank"}                              -> {} (away to about:blank)
//   {"do":"shot","path":P}                      -> {}
//   {"do":"quit"}
"use strict";

const readline = require("readline");
const { chromium } = require(process.env.LANES_PLAYWRIGHT);

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.LANES_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
    headless: true,
  });
  const page = await browser.newPage({ viewport: { width: 1100, height: 640 } });
  const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");
  const state = () => page.evaluate(() => ({
    cells: Object.fromEntries([...document.querySelectorAll("td[data-cell]")]
      .map((td) => [td.dataset.cell, td.textContent.trim()])),
    login: !document.getElementById("login").hidden,
    loadedAt: window.lanesLoadedAt,
    maps: window.lanesMaps,
    firstMapMs: window.lanesFirstMapMs,
    cellCount: document.querySelectorAll("td[data-cell]").length,
  }));
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    const cmd = JSON.parse(line);
    try {
      if (cmd.do === "open") {
        await page.goto(cmd.url);
        // The first map drawn, or the token asked for.
        await page.waitForFunction(() => window.lanesMaps > 0
          || !document.getElementById("login").hidden, null, { timeout: 15000 });
        say(await state());
      } else if (cmd.do === "wait") {
        const started = Date.now();
        let ok = true;
        try {
          await page.waitForFunction(([cell, text]) => {
            const td = document.querySelector(`td[data-cell="${cell}"]`);
            return td && td.textContent.includes(text);
          }, [cmd.cell, cmd.contains], { timeout: cmd.ms, polling: 50 });
        } catch (e) {
          ok = false;
        }
        say({ ok, elapsedMs: Date.now() - started, ...(await state()) });
      } else if (cmd.do === "release") {
        let ok = true;
        try {
          await page.waitForFunction(([id, text]) => {
            const a = document.querySelector(`article[data-release="${id}"]`);
            return a && a.textContent.includes(text);
          }, [cmd.id, cmd.contains], { timeout: cmd.ms, polling: 50 });
        } catch (e) {
          ok = false;
        }
        say({ ok, ...(await page.evaluate((id) => {
          const a = document.querySelector(`article[data-release="${id}"]`);
          return {
            text: a ? a.textContent : null,
            controls: a ? [...a.querySelectorAll("button[data-control]")].map((b) => b.dataset.control) : [],
            charts: a ? [...a.querySelectorAll("figure[data-metric]")].map((f) => ({
              metric: f.dataset.metric,
              caption: f.querySelector("figcaption").textContent,
              passed: f.querySelectorAll("circle.passed").length,
              thresholds: f.querySelectorAll("line.threshold").length,
            })) : [],
            events: a ? [...a.querySelectorAll(".events li")].map((li) => li.textContent) : [],
          };
        }, cmd.id)) });
      } else if (cmd.do === "click") {
        let asked = null;
        page.once("dialog", (d) => { asked = d.message(); d.accept(); });
        await page.evaluate(() => { document.getElementById("outcome").textContent = ""; });
        await page.click(`article[data-release="${cmd.id}"] button[data-control="${cmd.control}"]`);
        await page.waitForFunction(() => document.getElementById("outcome").textContent !== "",
          null, { timeout: 15000 });
        say({ asked, outcome: await page.evaluate(() => document.getElementById("outcome").textContent) });
      } else if (cmd.do === "post") {
        say(await page.evaluate(async ([path, method]) => {
          const t = localStorage.getItem("lanes-token");
          const resp = await fetch(path, { method, headers: t ? { Authorization: "Bearer " + t } : {} });
          const text = await resp.text();
          let body;
          try { body = JSON.parse(text); } catch (e) { body = text; }
          return { status: resp.status, body };
        }, [cmd.path, cmd.method || "POST"]));
      } else if (cmd.do === "path") {
        await page.evaluate(() => { document.getElementById("path-said").textContent = ""; });
        await page.selectOption("#send-lane", { label: cmd.lane });
        await page.fill("#send-trace", cmd.trace);
        await page.click("#send button[type=submit]");
        await page.waitForFunction(() => document.getElementById("path-said").textContent !== "",
          null, { timeout: 15000 });
        // The newest list follows the send: wait for it to name the trace.
        await page.waitForFunction((t) => document.querySelector("#recent tbody").textContent.includes(t),
          cmd.trace, { timeout: 15000 }).catch(() => {});
        say(await page.evaluate(() => ({
          said: document.getElementById("path-said").textContent,
          hops: [...document.querySelectorAll("#path li[data-hop]")].map((li) => ({
            service: li.dataset.hop,
            version: li.dataset.version,
            fallback: li.dataset.fallback || null,
            depth: (() => { let d = 0; for (let p = li.parentElement; p && p.id !== "path"; p = p.parentElement) if (p.tagName === "UL") d++; return d; })(),
          })),
          recent: [...document.querySelectorAll("#recent tbody tr")].map((tr) => tr.textContent),
        })));
      } else if (cmd.do === "traffic") {
        say(await page.evaluate(() => {
          const rps = {}, text = {}, window = {};
          for (const td of document.querySelectorAll("td[data-cell]")) {
            const t = td.querySelector(".traffic");
            if (t) {
              rps[td.dataset.cell] = parseFloat(t.dataset.rps);
              text[td.dataset.cell] = t.textContent;
              window[td.dataset.cell] = t.dataset.window.split(" ").map(parseFloat);
            }
          }
          return { rps, text, window };
        }));
      } else if (cmd.do === "keys") {
        // A narrow window, and the keyboard alone: Tab to the control, Enter.
        await page.setViewportSize({ width: cmd.width, height: 800 });
        await page.evaluate(() => { document.getElementById("outcome").textContent = ""; document.activeElement.blur(); });
        const target = `article[data-release="${cmd.id}"] button[data-control="${cmd.control}"]`;
        let tabs = 0;
        while (tabs < 300 && !(await page.evaluate((sel) => document.activeElement === document.querySelector(sel), target))) {
          await page.keyboard.press("Tab");
          tabs += 1;
        }
        let asked = null;
        page.once("dialog", (d) => { asked = d.message(); d.accept(); });
        await page.keyboard.press("Enter");
        await page.waitForFunction(() => document.getElementById("outcome").textContent !== "",
          null, { timeout: 15000 });
        say({
          tabs, asked,
          outcome: await page.evaluate(() => document.getElementById("outcome").textContent),
          overflow: await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth),
        });
        await page.setViewportSize({ width: 1100, height: 640 });
      } else if (cmd.do === "blank") {
        await page.goto("about:blank");
        say({});
      } else if (cmd.do === "shot") {
        await page.screenshot({ path: cmd.path, fullPage: true });
        say({});
      } else if (cmd.do === "quit") {
        break;
      }
    } catch (e) {
      say({ error: String(e) });
    }
  }
  await browser.close();
  // stdin stays open: leave now.
  process.exit(0);
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + "\n");
  process.exit(1);
});
