import { describe, expect, it } from "vitest";
import { formatBytes, formatCloseReason, formatDuration } from "./format.ts";

describe("audit formatting", () => {
  it("bytes", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1023)).toBe("1023 B");
    expect(formatBytes(1536)).toBe("1.5 KiB");
    expect(formatBytes(300 * 1024)).toBe("300 KiB");
    expect(formatBytes(5 * 1024 * 1024)).toBe("5.0 MiB");
  });
  it("durations", () => {
    expect(formatDuration(400)).toBe("0 s");
    expect(formatDuration(59_000)).toBe("59 s");
    expect(formatDuration(61_000)).toBe("1 min 1 s");
    expect(formatDuration(2 * 3600_000 + 5 * 60_000)).toBe("2 h 5 min");
  });
  it("why a session ended", () => {
    expect(formatCloseReason(null, null, null)).toBe("still open");
    expect(formatCloseReason("exit", 0, null)).toBe("shell exited (code 0)");
    expect(formatCloseReason("exit", null, "SIGHUP")).toBe("shell exited (signal SIGHUP)");
    expect(formatCloseReason("client_closed", null, null)).toBe("closed by the user");
    expect(formatCloseReason("eic_wiring_incomplete", null, null)).toBe("EIC wiring incomplete");
    expect(formatCloseReason("something_new", null, null)).toBe("something new");
  });
});
