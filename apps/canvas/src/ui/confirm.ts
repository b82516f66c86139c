import { h } from "../dom.ts";

/** A modal confirmation (native <dialog>: focus is trapped and Escape cancels). */
export function confirmDialog(title: string, body: string, confirmLabel: string): Promise<boolean> {
  return new Promise((resolve) => {
    const ok = h("button", { type: "submit", value: "ok", class: "danger" }, confirmLabel);
    const cancel = h("button", { type: "submit", value: "cancel", autofocus: true }, "Cancel");
    const dlg = h(
      "dialog",
      { "aria-labelledby": "confirm-title", "aria-describedby": "confirm-body" },
      h("form", { method: "dialog" }, h("h2", { id: "confirm-title" }, title), h("p", { id: "confirm-body" }, body), h("div", { class: "actions" }, cancel, ok)),
    );
    const back = document.activeElement as HTMLElement | null;
    dlg.addEventListener("close", () => {
      resolve(dlg.returnValue === "ok");
      dlg.remove();
      back?.focus();
    });
    document.body.append(dlg);
    dlg.showModal();
    cancel.focus();
  });
}
