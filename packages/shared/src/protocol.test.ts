import { describe, expect, it } from "vitest";
import { terminalQuery } from "./protocol.ts";

const parse = (q: Record<string, string>) => terminalQuery.safeParse(q);
const S = "3b241101-e2bb-4255-8caf-4136c566a962";

describe("input_from (a client that counts its input)", () => {
  it("a new session's input starts at 0; a re-attach says where it resumes", () => {
    expect(parse({ command: '["cat"]', pty: "0", input_from: "0" })).toMatchObject({ success: true, data: { input_from: 0 } });
    expect(parse({ session: S, offset: "10", input_from: "123456789" })).toMatchObject({ success: true, data: { input_from: 123456789 } });
    expect(parse({ session: S }).data?.input_from).toBeUndefined();
  });

  it("refused: not a whole number, negative, past 0 for a new session, from a viewer", () => {
    const bads: Record<string, string>[] = [{ input_from: "x" }, { input_from: "-1" }, { input_from: "1.5" }, { input_from: "7" }, { session: S, mode: "view", input_from: "0" }];
    for (const bad of bads) {
      const r = parse(bad);
      expect(r.success, JSON.stringify(bad)).toBe(false);
      expect(r.error?.issues.some((i) => i.path[0] === "input_from"), JSON.stringify(bad)).toBe(true);
    }
  });
});
