import "@xterm/xterm/css/xterm.css";
import "./styles.css";
import { ApiError, createApiClient, type Workspace } from "./api.ts";
import { h } from "./dom.ts";
import { announce, mountAnnouncer } from "./ui/announce.ts";
import { createAuditTab } from "./ui/audit-tab.ts";
import { createTabs } from "./ui/tabs.ts";
import { createPlayerTab } from "./ui/player-tab.ts";
import { createTerminalTab } from "./ui/terminal-tab.ts";
import { createWorkspacesView } from "./ui/workspaces.ts";

// Session storage: gone with the browser tab, never in a URL or a cookie.
const TOKEN_KEY = "molecule.orgToken";

const root = document.getElementById("app")!;
mountAnnouncer(document.body);

function showSignIn(message = ""): void {
  const input = h("input", {
    id: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": "token-error",
    required: true,
  });
  const error = h("p", { id: "token-error", class: "field-error", "aria-live": "polite" }, message);
  const submit = h("button", { type: "submit" }, "Sign in");
  // No `name` on the input and no action: the token cannot end up in a URL even if scripts fail.
  const form = h(
    "form",
    { class: "signin", method: "post", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Molecule Canvas"),
    h("label", { for: "token" }, "Organisation token"),
    input,
    error,
    submit,
    h("p", { class: "muted" }, "The token is kept in this browser tab only (session storage) and sent in the Authorization header."),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const token = input.value.trim();
    if (!token) {
      error.textContent = "Enter an organisation token";
      input.focus();
      return;
    }
    submit.disabled = true;
    error.textContent = "";
    // One workspace is enough to learn whether the token works.
    createApiClient(token)
      .listWorkspaces(1)
      .then(() => {
        sessionStorage.setItem(TOKEN_KEY, token);
        showApp(token);
        announce("Signed in");
      })
      .catch((err) => {
        error.textContent = err instanceof ApiError && err.status === 401 ? "This token is not valid (revoked or mistyped)" : (err as Error).message;
        submit.disabled = false;
        input.focus();
      });
  });
  root.replaceChildren(h("main", { class: "signin-page" }, form));
  input.focus();
}

function showApp(token: string): void {
  const api = createApiClient(token);
  const signOut = h("button", { type: "button" }, "Sign out");
  const reference = h("a", { class: "reference", href: "/reference", target: "_blank", rel: "noopener" }, "API reference");
  const header = h("header", { class: "top" }, h("h1", {}, "Molecule Canvas"), h("span", { class: "spacer" }), reference, signOut);
  const empty = h("div", { class: "empty" }, h("p", {}, "Open a workspace's Terminal or Sessions from the list."));
  const work = h("section", { class: "work", "aria-label": "Terminals and sessions" });
  const tabs = createTabs(work, empty);
  const view = createWorkspacesView({
    api,
    openTerminal: (ws: Workspace) => tabs.open(createTerminalTab({ api, workspace: ws, leave: () => tabs.focusStrip() })),
    openSessions: (ws: Workspace) =>
      tabs.open(
        createAuditTab(api, ws, {
          play: (sid) => tabs.open(createPlayerTab(api, ws, sid)),
          watch: (sid) => tabs.open(createTerminalTab({ api, workspace: ws, leave: () => tabs.focusStrip(), watch: sid })),
        }),
      ),
    unauthorized: (message) => end(`Signed out: ${message}`),
  });
  const aside = h("aside", { class: "side", "aria-label": "Workspaces" }, view.root);
  root.replaceChildren(header, h("main", { class: "layout" }, aside, work));

  function end(message: string): void {
    view.stop();
    tabs.closeAll();
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn(message);
  }
  signOut.addEventListener("click", () => {
    end("");
    announce("Signed out");
  });
  view.start();
}

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) showApp(saved);
else showSignIn();
