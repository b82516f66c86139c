import { z } from "zod";
import { createWorkspaceBody, terminalQueryObject, workspaceJson } from "@molecule/shared";
import { listQuery } from "./routes/workspaces.ts";
import { auditJson } from "./terminal/audit-json.ts";

const errorBody = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown() }),
});

const schemaOf = (s: z.ZodType, io: "input" | "output" = "output") => {
  const { $schema: _drop, ...rest } = z.toJSONSchema(s, { io, unrepresentable: "any" }) as Record<string, unknown>;
  return rest;
};

function queryParams(s: z.ZodObject) {
  const js = schemaOf(s, "input") as { properties?: Record<string, unknown>; required?: string[] };
  return Object.entries(js.properties ?? {}).map(([name, sch]) => ({
    name,
    in: "query",
    required: js.required?.includes(name) ?? false,
    schema: sch,
  }));
}

const err = (description: string) => ({
  description,
  content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
});
const json = (description: string, ref: string) => ({
  description,
  content: { "application/json": { schema: { $ref: `#/components/schemas/${ref}` } } },
});
const idParam = { name: "id", in: "path", required: true, schema: { type: "string", format: "uuid" } };
const common = { "400": err("Malformed id or request"), "401": err("Missing or invalid token"), "404": err("No such workspace in this organisation"), "503": err("Database or queue unavailable") };

/** OpenAPI 3.1, generated from the same zod schemas that validate requests, so it cannot drift. */
export function buildOpenApi(): Record<string, unknown> {
  return {
    openapi: "3.1.0",
    info: { title: "Molecule workspaces API", version: "1.0.0" },
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "Org API token (mol_...)" } },
      schemas: {
        Error: schemaOf(errorBody),
        CreateWorkspace: schemaOf(createWorkspaceBody, "input"),
        Workspace: schemaOf(workspaceJson),
        WorkspaceList: schemaOf(z.object({ workspaces: z.array(workspaceJson), next_cursor: z.string().nullable() })),
        PublicStatus: schemaOf(workspaceJson.pick({ id: true, status: true })),
        TerminalSession: schemaOf(auditJson),
        Ticket: schemaOf(z.object({ ticket: z.string(), expires_at: z.string() })),
      },
    },
    security: [{ bearer: [] }],
    paths: {
      "/healthz": { get: { security: [], summary: "Process is up", responses: { "200": { description: "ok" } } } },
      "/readyz": {
        get: { security: [], summary: "Postgres and Redis reachable", responses: { "200": { description: "ready" }, "503": err("not ready") } },
      },
      "/workspaces": {
        post: {
          summary: "Create a workspace",
          requestBody: { required: true, content: { "application/json": { schema: { $ref: "#/components/schemas/CreateWorkspace" } } } },
          responses: {
            "201": json("Created; status is provisioning", "Workspace"),
            ...common,
            "413": err("Body too large (counted after decompression)"),
            "415": err("Body is not UTF-8 JSON, or its Content-Encoding is not gzip, deflate or br"),
            "429": err("Creating workspaces too fast"),
          },
        },
        get: {
          summary: "List the organisation's workspaces, newest first",
          parameters: queryParams(listQuery),
          responses: { "200": json("A page of workspaces", "WorkspaceList"), ...common },
        },
      },
      "/workspaces/{id}": {
        parameters: [idParam],
        get: {
          summary: "Read a workspace (without a token: only id and status)",
          security: [{ bearer: [] }, {}],
          responses: { "200": json("The workspace (or {id, status} without a token)", "Workspace"), ...common },
        },
        delete: { summary: "Tear a workspace down (idempotent)", responses: { "202": json("Teardown started", "Workspace"), ...common } },
      },
      "/workspaces/{id}/restart": {
        parameters: [idParam],
        post: { summary: "Re-provision a ready or failed workspace", responses: { "202": json("Restarting", "Workspace"), "409": err("Not restartable now"), ...common } },
      },
      "/workspaces/{id}/terminal/tickets": {
        parameters: [idParam],
        post: { summary: "Single-use ticket for a browser WebSocket", responses: { "201": json("Ticket", "Ticket"), ...common } },
      },
      "/workspaces/{id}/terminal/sessions": {
        parameters: [idParam],
        get: {
          summary: "Terminal session audit, newest first",
          responses: {
            "200": { description: "sessions", content: { "application/json": { schema: { type: "object", properties: { sessions: { type: "array", items: { $ref: "#/components/schemas/TerminalSession" } } } } } } },
            ...common,
          },
        },
      },
      "/workspaces/{id}/terminal": {
        parameters: [idParam, ...queryParams(terminalQueryObject)],
        get: {
          summary: "WebSocket upgrade: the terminal (see docs/terminal-protocol.md)",
          responses: { "101": { description: "Switching protocols" }, ...common, "403": err("Origin not allowed"), "426": err("A plain GET without a WebSocket upgrade") },
        },
      },
    },
  };
}
