// A unified diff of two texts (the session's start and now), line by line: the longest
// common subsequence, then hunks with three lines of context, as `diff -u` prints them.
const CONTEXT = 3;
const MAX_CELLS = 4_000_000;  // past this the table would be too big: show both sides whole

const lines = (text) => (text === null || text === undefined || text === "" ? [] : text.replace(/\n$/, "").split("\n"));

function edits(a, b) {
  // trim the common head and tail first: most edits touch a few lines of a long file
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length, endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) { endA--; endB--; }
  const x = a.slice(start, endA), y = b.slice(start, endB);
  const out = a.slice(0, start).map((l) => [" ", l]);
  if (x.length * y.length > MAX_CELLS) {
    out.push(...x.map((l) => ["-", l]), ...y.map((l) => ["+", l]));
  } else {
    const n = x.length, m = y.length, w = m + 1;
    const len = new Uint32Array((n + 1) * w);
    for (let i = n - 1; i >= 0; i--)
      for (let j = m - 1; j >= 0; j--)
        len[i * w + j] = x[i] === y[j] ? len[(i + 1) * w + j + 1] + 1 : Math.max(len[(i + 1) * w + j], len[i * w + j + 1]);
    let i = 0, j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && x[i] === y[j]) { out.push([" ", x[i]]); i++; j++; }
      else if (i < n && (j === m || len[(i + 1) * w + j] >= len[i * w + j + 1])) out.push(["-", x[i++]]);
      else out.push(["+", y[j++]]);
    }
  }
  out.push(...a.slice(endA).map((l) => [" ", l]));
  return out;
}

export function unifiedDiff(path, before, after) {
  const a = lines(before), b = lines(after);
  const ops = edits(a, b);
  const head = [`--- ${before === null ? "/dev/null" : "a/" + path}`, `+++ ${after === null ? "/dev/null" : "b/" + path}`];
  const changed = ops.map((o, k) => (o[0] !== " " ? k : -1)).filter((k) => k >= 0);
  if (!changed.length) return head.concat(["(no line changes)"]).join("\n");
  const out = head;
  let k = 0;
  while (k < changed.length) {
    let from = Math.max(0, changed[k] - CONTEXT), to = changed[k];
    while (k < changed.length && changed[k] <= to + 2 * CONTEXT + 1) to = changed[k++];
    to = Math.min(ops.length - 1, to + CONTEXT);
    // line numbers at the hunk's start
    let la = 1, lb = 1;
    for (let i = 0; i < from; i++) { if (ops[i][0] !== "+") la++; if (ops[i][0] !== "-") lb++; }
    const body = ops.slice(from, to + 1);
    const na = body.filter((o) => o[0] !== "+").length, nb = body.filter((o) => o[0] !== "-").length;
    out.push(`@@ -${na ? la : la - 1},${na} +${nb ? lb : lb - 1},${nb} @@`);
    for (const [op, l] of body) out.push(op + l);
  }
  return out.join("\n");
}
