/** A RESP2 value as the sharded subscriber reads it: bulk strings stay bytes (terminal output is binary). */
export type RespValue = Buffer | string | number | null | RespError | RespValue[];

export class RespError {
  constructor(readonly message: string) {}
}

/** Parses one RESP2 value at `at`; null when `buf` does not hold all of it yet. */
export function parseResp(buf: Buffer, at: number): { value: RespValue; end: number } | null {
  const eol = buf.indexOf("\r\n", at, "latin1");
  if (eol < 0) return null;
  const type = buf[at];
  const line = buf.toString("latin1", at + 1, eol);
  switch (type) {
    case 0x2b: // +
      return { value: line, end: eol + 2 };
    case 0x2d: // -
      return { value: new RespError(buf.toString("utf8", at + 1, eol)), end: eol + 2 };
    case 0x3a: // :
      return { value: Number(line), end: eol + 2 };
    case 0x24: {
      // $
      const n = Number(line);
      if (n < 0) return { value: null, end: eol + 2 };
      if (buf.length < eol + 2 + n + 2) return null;
      return { value: buf.subarray(eol + 2, eol + 2 + n), end: eol + 2 + n + 2 };
    }
    case 0x2a: {
      // *
      const n = Number(line);
      if (n < 0) return { value: null, end: eol + 2 };
      const out: RespValue[] = [];
      let end = eol + 2;
      for (let i = 0; i < n; i++) {
        const r = parseResp(buf, end);
        if (!r) return null;
        out.push(r.value);
        end = r.end;
      }
      return { value: out, end };
    }
    default:
      throw new Error(`unexpected reply type ${JSON.stringify(String.fromCharCode(type ?? 0))}`);
  }
}
