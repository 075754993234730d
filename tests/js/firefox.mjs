// Opens one URL in Debian's Firefox ESR (default prefs, headless) over WebDriver BiDi, waits for the page's
// window.report and prints it as JSON on stdout. Usage: node firefox.mjs <url> [timeout-ms]
import puppeteer from "puppeteer-core";

const [url, timeout = "60000"] = process.argv.slice(2);
const browser = await puppeteer.launch({
  browser: "firefox",
  protocol: "webDriverBiDi",
  executablePath: process.env.FIREFOX ?? "/usr/bin/firefox-esr",
  headless: true,
});
try {
  const page = await browser.newPage();
  page.on("console", (message) => console.error(`[page] ${message.type()}: ${message.text()}`));
  await page.goto(url);
  await page.waitForFunction(() => window.report !== undefined, { timeout: Number(timeout), polling: 200 });
  const report = await page.evaluate(() => window.report);
  report.userAgent = await page.evaluate(() => navigator.userAgent);
  console.log(JSON.stringify(report));
} finally {
  await browser.close();
}
