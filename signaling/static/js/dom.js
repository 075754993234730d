// Tiny DOM helpers shared by the pages.

export const $ = (selector, root = document) => root.querySelector(selector);

/**
 * Create an element: `h("button", {class: "primary", onclick: fn, "aria-label": "Go"}, "Go")`.
 * Props named on* become listeners, `class` sets className, `dataset` fills data-*, true/false toggle
 * boolean attributes; children may be strings, nodes, arrays, null or false.
 */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else if (value !== false && value !== null && value !== undefined) node.setAttribute(key, value);
  }
  node.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}
