// A `deno lint` plugin (enabled in deno.json) holding the library to short functions: a function in lib/
// longer than MAX_LINES lines fails the lint unless the comment block right above the line it starts on
// says why, in a line that contains `long:` (e.g. `// long: one pass over the header; splitting costs a
// closure per entry`). See docs/structure.md.
const MAX_LINES = 80;

function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) starts.push(i + 1);
  return starts;
}

/** Index of the line holding offset `pos` (binary search over the line starts). */
function lineOf(starts: number[], pos: number): number {
  let lo = 0, hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid] <= pos) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** True when the comment lines directly above `line` (no blank line between) give a `long:` reason. */
function hasReason(lines: string[], line: number): boolean {
  for (let i = line - 1; i >= 0; i--) {
    const l = lines[i].trim();
    if (!(l.startsWith("//") || l.startsWith("*") || l.startsWith("/*"))) return false;
    if (/\blong:/.test(l)) return true;
  }
  return false;
}

const plugin: Deno.lint.Plugin = {
  name: "cfsctl",
  rules: {
    "max-function-lines": {
      create(context) {
        if (!/[\\/]lib[\\/]/.test(context.filename)) return {};
        const text = context.sourceCode.text;
        const starts = lineStarts(text);
        const lines = text.split("\n");
        const check = (node: Deno.lint.Node) => {
          const first = lineOf(starts, node.range[0]);
          const count = lineOf(starts, node.range[1]) - first + 1;
          if (count <= MAX_LINES || hasReason(lines, first)) return;
          context.report({
            node,
            message: `function of ${count} lines (over ${MAX_LINES})`,
            hint: "split it, or say why it must stay whole in a `// long: …` comment on the line above",
          });
        };
        return { FunctionDeclaration: check, FunctionExpression: check, ArrowFunctionExpression: check };
      },
    },
  },
};
export default plugin;
