// Building the page's elements. Text goes in as text nodes, never as HTML: what the monitor
// sends (error messages, alert summaries) was written by services and may hold anything.

const SVG = "http://www.w3.org/2000/svg";

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined) continue;
    if (name === "class") node.className = value;
    else node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

export function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  for (const child of children) node.append(child);
  return node;
}

/** Replace ``parent``'s children with ``items``, or with ``placeholder()`` when none. */
export function fill(parent, items, placeholder) {
  parent.replaceChildren(...(items.length ? items : [placeholder()]));
}
