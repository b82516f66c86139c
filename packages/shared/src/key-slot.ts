/**
 * Redis Cluster's hash slot of a key (CRC16/XMODEM of the key, or of its
 * `{hash tag}`, mod 16384), as CLUSTER KEYSLOT computes it: the writer routes
 * by it and the sharded subscriber groups channels by it.
 */
const TABLE = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let j = 0; j < 8; j++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    t[i] = c;
  }
  return t;
})();

export const SLOTS = 16384;

export function keySlot(key: string | Buffer): number {
  let b = typeof key === "string" ? Buffer.from(key) : key;
  const open = b.indexOf(0x7b); // {
  if (open >= 0) {
    const close = b.indexOf(0x7d, open + 1); // }
    // An empty tag ("{}") does not count: the whole key is hashed.
    if (close > open + 1) b = b.subarray(open + 1, close);
  }
  let crc = 0;
  for (const byte of b) crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ byte) & 0xff]!;
  return crc % SLOTS;
}
