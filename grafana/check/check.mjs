// Type-checks every dashboard in ../dashboards against Grafana's own dashboard type
// (@grafana/schema), strictly: each JSON file becomes the initializer of a `Dashboard`-typed
// constant, so TypeScript checks literal values and flags keys the schema does not know.
// Importing the JSON instead would widen its strings and skip the excess-key check.
// Usage: npm ci && node check.mjs [DIR]   (DIR defaults to ../dashboards; exit 0 when every
// dashboard type-checks)
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dashboards = process.argv[2] ?? join(here, "..", "dashboards");
const gen = join(here, ".gen");
rmSync(gen, { recursive: true, force: true });
mkdirSync(gen);

const files = [];
for (const name of readdirSync(dashboards).filter((f) => f.endsWith(".json")).sort()) {
  const json = readFileSync(join(dashboards, name), "utf8");
  JSON.parse(json); // a syntax error names the file here, not in generated code
  const ts = join(gen, name.replace(/\.json$/, ".ts"));
  writeFileSync(
    ts,
    `import type { Dashboard } from "@grafana/schema";\n` +
      `export const dashboard: Dashboard = ${json};\n`,
  );
  files.push(ts);
}
if (files.length === 0) {
  console.error(`no dashboards in ${dashboards}`);
  process.exit(1);
}
const tsc = join(here, "node_modules", ".bin", "tsc");
const flags = ["--noEmit", "--strict", "--module", "nodenext", "--moduleResolution", "nodenext", "--skipLibCheck"];
try {
  execFileSync(tsc, [...flags, ...files], { cwd: here, stdio: "inherit" });
} catch {
  process.exit(1);
}
console.log(`${files.length} dashboard(s) type-check against @grafana/schema`);
