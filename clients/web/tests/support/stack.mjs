// Starts the whole Tailor stack with the launcher for one test file, and stops
// it again. The launcher's output is kept and only shown when something fails.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";

const repoRoot = path.resolve(import.meta.dirname, "../../../..");
export const webDir = path.join(repoRoot, "clients/web");
const launcher = path.join(repoRoot, "target/debug/tailor");

const READY_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 30_000;

/**
 * Runs `tailor up` on free ports with a fresh data directory and resolves once
 * it prints the shop's address. Returns the web BFF's address, the shop URL,
 * `kill(name)`, which kills one of its servers, and `stop()`, which must be
 * called in every case.
 */
export async function startStack() {
  if (!existsSync(launcher)) {
    throw new Error(`${launcher} does not exist: build the Rust side first (cargo build)`);
  }
  const dist = path.join(webDir, "dist");
  if (!existsSync(path.join(dist, "index.html"))) {
    throw new Error(`${dist}/index.html does not exist: run npm run build in clients/web first`);
  }
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "tailor-web-test-"));
  const child = spawn(
    launcher,
    ["up", "--any-ports", "--data-dir", dataDir, "--products", "300", "--fulfilment-step-ms", "700", "--web-dir", dist],
    { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (chunk) => (output += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk) => (output += chunk));
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };

  try {
    const shopUrl = await new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`the launcher printed no "Open the shop:" line within ${READY_TIMEOUT_MS / 1000} s`)),
        READY_TIMEOUT_MS,
      );
      const check = () => {
        const match = /Open the shop:\s+(\S+)\s/.exec(output);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      };
      child.stdout.on("data", check);
      exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`the launcher exited (code ${code}, signal ${signal}) before the shop was ready`));
      });
    });
    const bff = /^\s*web-bff\s+(\S+)\s/m.exec(output);
    if (!bff) throw new Error("the launcher printed no web-bff row");
    // Kills one server of the stack (`reviews`), as a crash would; the
    // launcher keeps the others running.
    const kill = (name) => {
      execFileSync("pkill", ["-KILL", "-f", `tailor-${name} --listen .* --data-dir ${dataDir}`]);
    };
    return { shopUrl, webBffAddress: bff[1], kill, stop };
  } catch (error) {
    await stop();
    throw new Error(`${error.message}\n--- launcher output ---\n${output}`);
  }
}

/** A development JWT for the web BFF, as `tailor token` mints it. */
export function bearerToken(subject) {
  return execFileSync(launcher, ["token", "--audience", "tailor-web", "--subject", subject], {
    cwd: repoRoot,
    encoding: "utf8",
  }).trim();
}
