// The landing page of an invitation by email, in a real browser: Debian's Chromium, headless,
// driven by playwright-core, with JavaScript off (the page must work without it). Opens the
// mail's link, checks what the page shows, chooses a user name and password, submits, and
// checks the welcome page; screenshots of both go to $SCREENSHOT_DIR. Prints one JSON line.
import { chromium } from "playwright-core";

const link = process.env.INVITE_LINK;
const dir = process.env.SCREENSHOT_DIR;
const username = process.env.INVITE_USERNAME;
const password = process.env.INVITE_PASSWORD;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
try {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  const response = await page.goto(link);
  const invitation = await page.locator("h1").innerText();
  await page.screenshot({ path: `${dir}/invitation.png`, fullPage: true });
  await page.fill("#username", username);
  await page.fill("#password", password);
  await page.fill("#confirm", password);
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  const welcome = await page.locator("main").innerText();
  const elementLink = await page.locator("a.button").getAttribute("href");
  await page.screenshot({ path: `${dir}/welcome.png`, fullPage: true });
  console.log(JSON.stringify({ ok: true, status: response.status(), invitation, welcome, elementLink }));
} catch (error) {
  console.log(JSON.stringify({ ok: false, error: String(error) }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
