import { eq } from "drizzle-orm";
import { afterAll, describe, expect, it } from "vitest";
import { testUrls } from "../../../../test/helpers/env.ts";
import { createDb } from "./client.ts";
import * as schema from "./schema.ts";

// One connection, so the prepared statements listed are the ones this pool's queries made.
const handle = createDb(testUrls().databaseUrl, { max: 1 });
afterAll(() => handle.close());

const prepared = async () => (await handle.db.execute<{ statement: string }>("select statement from pg_prepared_statements")).map((r) => r.statement);

describe("createDb", () => {
  it("runs drizzle's queries with parameters as prepared statements: parsed once per connection, one round trip after", async () => {
    const byId = (id: string) => handle.db.select({ id: schema.orgs.id }).from(schema.orgs).where(eq(schema.orgs.id, id));
    await byId("00000000-0000-4000-8000-000000000001");
    const after = await prepared();
    expect(after).toContain('select "id" from "orgs" where "orgs"."id" = $1');
    // The same statement again (other values): no new one.
    await byId("00000000-0000-4000-8000-000000000002");
    expect(await prepared()).toEqual(after);
  });

  it("prepares inside transactions too, and leaves queries without parameters simple", async () => {
    await handle.db.transaction(async (tx) => {
      await tx.select({ id: schema.orgs.id }).from(schema.orgs).where(eq(schema.orgs.name, "no such org"));
    });
    expect(await prepared()).toContain('select "id" from "orgs" where "orgs"."name" = $1');
    await handle.db.execute("select 42 as answer");
    expect((await prepared()).filter((s) => s.includes("answer"))).toEqual([]);
  });
});
