// A small helper to build DOM trees. Text is always added as text nodes, so
// nothing from the server is ever parsed as HTML.

type Child = Node | string | null | undefined | false;

interface Props {
  /** The class attribute. */
  class?: string;
  /** The data-testid attribute the browser test finds elements by. */
  testid?: string;
  /** Any other attribute; undefined leaves it out. */
  [attribute: string]: string | undefined;
}

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined) continue;
    if (name === "class") element.className = value;
    else if (name === "testid") element.dataset.testid = value;
    else element.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) element.append(child);
  }
  return element;
}

/** The element with this data-testid, which index.html must contain. */
export function byTestId<T extends HTMLElement = HTMLElement>(testid: string): T {
  const element = document.querySelector<T>(`[data-testid="${testid}"]`);
  if (element === null) throw new Error(`index.html has no element ${testid}`);
  return element;
}
