let region: HTMLElement | null = null;

/** The page's one polite live region: status changes are read out without moving focus. */
export function mountAnnouncer(parent: HTMLElement): void {
  region = document.createElement("div");
  region.className = "sr-only";
  region.setAttribute("aria-live", "polite");
  region.setAttribute("role", "status");
  region.id = "announcer";
  parent.append(region);
}

export function announce(message: string): void {
  if (!region) return;
  // A fresh node per message: screen readers announce additions, and repeats of the same text too.
  const p = document.createElement("p");
  p.textContent = message;
  region.append(p);
  while (region.childElementCount > 5) region.firstElementChild?.remove();
}
