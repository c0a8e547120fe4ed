// Syntax highlighting for the editor: highlight.js 11.12.0 (its "common" languages build,
// vendored with its BSD-3-Clause license), loaded only when a file in a known language
// is opened, so the first page load stays small.
import hljs from "/ui/vendor/highlight/highlight.min.js";

const CSS = "/ui/vendor/highlight/github.min.css";
if (!document.querySelector(`link[href="${CSS}"]`)) {
  const link = document.createElement("link");
  link.rel = "stylesheet"; link.href = CSS;
  document.head.append(link);
}

// HTML for `text`: highlight.js escapes the text, the markup is only its own <span>s
export const highlight = (text, language) => hljs.highlight(text, { language, ignoreIllegals: true }).value;
