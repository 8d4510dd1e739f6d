// Start and stop a real Bindery process for the suite.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, existsSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, "../../../..");

export function binderyBin() {
  const bin = process.env.BINDERY_BIN || path.join(repoRoot, "target/debug/bindery");
  if (!existsSync(bin)) {
    throw new Error(`Bindery binary not found at ${bin} (build it with \`cargo build\` or set BINDERY_BIN)`);
  }
  return bin;
}

const ANSI = /\x1b\[[0-9;]*m/g;

// Bindery reads its settings from `BINDERY_*` environment variables too and rejects unknown ones
// ("invalid setting bin (from `BINDERY_` environment variable(s))"), so the harness's own
// variables must not reach it.
function childEnv() {
  const env = { ...process.env, NO_COLOR: "1" };
  delete env.BINDERY_BIN;
  delete env.BINDERY_KEEP_DATA;
  return env;
}

export class Bindery {
  constructor() {
    this.bin = binderyBin();
    this.dataDir = mkdtempSync(path.join(os.tmpdir(), "bindery-node-conformance-"));
    this.stdout = "";
    this.stderr = "";
    this.exit = null; // {code, signal} once the process ended
  }

  /** Spawn `bindery serve` and resolve once it listens and has printed its fresh credentials. */
  start(timeoutMs = 20000) {
    const child = spawn(this.bin, ["serve", "--listen", "127.0.0.1:0", "--data-dir", this.dataDir], {
      stdio: ["ignore", "pipe", "pipe"],
      env: childEnv(),
    });
    this.child = child;
    this.exited = new Promise((resolve) => {
      child.on("exit", (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (err) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(this);
      };
      const poll = () => {
        const err = this.stderr.replace(ANSI, "");
        const listen = err.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
        if (listen && !settled) {
          // With no terminal on stdout, the first account's credentials go to a file that only
          // its owner may read, written before the server listens.
          const account = JSON.parse(readFileSync(path.join(this.dataDir, "first-account.json"), "utf8"));
          this.accountSid = account.account_sid;
          this.authToken = account.auth_token;
          this.baseUrl = listen[1];
          finish();
        }
      };
      // Keep draining both pipes for the whole life of the process, so it never blocks on a
      // full pipe; the text is kept for diagnostics.
      child.stdout.setEncoding("utf8");
      child.stderr.setEncoding("utf8");
      child.stdout.on("data", (d) => { this.stdout += d; poll(); });
      child.stderr.on("data", (d) => { this.stderr += d; poll(); });
      child.on("error", (e) => finish(e));
      child.on("exit", (code, signal) =>
        finish(new Error(`bindery serve exited early (code ${code}, signal ${signal})\n${this.output()}`)));
      const timer = setTimeout(
        () => finish(new Error(`bindery serve did not start within ${timeoutMs} ms\n${this.output()}`)),
        timeoutMs,
      );
    });
  }

  output() {
    const tail = (s) => s.split("\n").slice(-40).join("\n");
    return `--- bindery stdout ---\n${tail(this.stdout)}\n--- bindery stderr ---\n${tail(this.stderr)}`;
  }

  /** SIGTERM, and resolve with {code, signal}; SIGKILL after `timeoutMs`. */
  async stop(timeoutMs = 10000) {
    if (!this.child || this.exit) return this.exit;
    this.child.kill("SIGTERM");
    let timer;
    const killed = new Promise((resolve) => {
      timer = setTimeout(() => {
        this.child.kill("SIGKILL");
        resolve(null);
      }, timeoutMs);
    });
    const first = await Promise.race([this.exited, killed]);
    clearTimeout(timer);
    const exit = await this.exited;
    return first === null ? { ...exit, timedOut: true } : exit;
  }

  verify() {
    return spawnSync(this.bin, ["verify", "--data-dir", this.dataDir], {
      encoding: "utf8",
      timeout: 30000,
      env: childEnv(),
    });
  }

  cleanup() {
    if (this.child && !this.exit) this.child.kill("SIGKILL");
    if (process.env.BINDERY_KEEP_DATA) {
      console.error(`# kept Bindery data dir ${this.dataDir}`);
      return;
    }
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
