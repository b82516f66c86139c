import { z } from "zod";
import { createWorkspaceBody, terminalQueryObject, workspaceJson } from "@molecule/shared";
import { eventPageJson, eventsQuery } from "./routes/events.ts";
import { IDEMPOTENCY_TTL_HOURS } from "./routes/idempotency.ts";
import { recordingSettingsBody, recordingSettingsJson } from "./routes/recordings.ts";
import { sessionsQuery } from "./routes/terminal-sessions.ts";
import { ticketBody } from "./terminal/routes.ts";
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
const idempotencyHeader = {
  name: "Idempotency-Key",
  in: "header",
  required: false,
  description: `Makes a retried create safe: a request with the same key and the same body within ${IDEMPOTENCY_TTL_HOURS} h returns the workspace the first one made (same id, 201, header Idempotent-Replayed: true); the same key with a different body is a 422 idempotency_key_reused. Keys are per organisation, 1 to 255 printable ASCII characters; a UUID is a good key.`,
  schema: { type: "string", minLength: 1, maxLength: 255 },
};
/**
 * Routes the API serves that are not API operations and so not in this document: the
 * reference page's script, the Canvas's static files and the plain-text docs. The
 * route-coverage test reads this list.
 */
export const NOT_IN_OPENAPI: readonly string[] = ["GET /reference/redoc.standalone.js"];

const common = { "400": err("Malformed id or request"), "401": err("Missing or invalid token"), "404": err("No such workspace in this organisation"), "503": err("Database or queue unavailable") };

/** OpenAPI 3.1, generated from the same zod schemas that validate requests, so it cannot drift. */
export function buildOpenApi(): Record<string, unknown> {
  return {
    openapi: "3.1.0",
    info: {
      title: "Molecule workspaces API",
      version: "1.0.0",
      description:
        "Workspaces and their terminals, for an organisation's API token. Errors are always {\"error\": {\"code\", \"message\", \"details\"}}. Operations only the server's operators can do (orgs, tokens, migrations) are not here: see docs/api.md.",
    },
    tags: [
      { name: "Workspaces", description: "Create, watch, restart and remove workspaces" },
      { name: "Terminal", description: "Browser terminals and their audit (protocol: docs/terminal-protocol.md)" },
      { name: "Reference", description: "This document" },
      { name: "Operations", description: "Health and metrics for load balancers and monitoring" },
    ],
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "Org API token (mol_...)" } },
      schemas: {
        Error: schemaOf(errorBody),
        CreateWorkspace: schemaOf(createWorkspaceBody, "input"),
        Workspace: schemaOf(workspaceJson),
        WorkspaceList: schemaOf(z.object({ workspaces: z.array(workspaceJson), next_cursor: z.string().nullable() })),
        EventPage: schemaOf(eventPageJson),
        TerminalSessionPage: schemaOf(z.object({ sessions: z.array(auditJson), next_cursor: z.string().nullable() })),
        PublicStatus: schemaOf(workspaceJson.pick({ id: true, status: true })),
        TerminalSession: schemaOf(auditJson),
        Ticket: schemaOf(z.object({ ticket: z.string(), expires_at: z.string() })),
        TicketRequest: schemaOf(ticketBody, "input"),
        RecordingSettings: schemaOf(recordingSettingsJson),
        RecordingSettingsPatch: schemaOf(recordingSettingsBody, "input"),
      },
    },
    security: [{ bearer: [] }],
    paths: {
      "/healthz": { get: { operationId: "getHealth", tags: ["Operations"], security: [], summary: "Process is up", responses: { "200": { description: "ok" } } } },
      "/readyz": {
        get: {
          operationId: "getReadiness",
          tags: ["Operations"],
          security: [],
          summary: "Postgres and Redis reachable",
          responses: { "200": { description: "ready" }, "503": err("not ready") },
        },
      },
      "/metrics": {
        get: {
          operationId: "getMetrics",
          tags: ["Operations"],
          security: [],
          summary: "Prometheus metrics of this node (keep it off the public listener: see docs/deployment.md)",
          responses: { "200": { description: "Prometheus text format", content: { "text/plain": { schema: { type: "string" } } } } },
        },
      },
      "/openapi.json": {
        get: {
          operationId: "getOpenApi",
          tags: ["Reference"],
          security: [],
          summary: "This document",
          responses: { "200": { description: "OpenAPI 3.1", content: { "application/json": { schema: { type: "object" } } } } },
        },
      },
      "/reference": {
        get: {
          operationId: "getReference",
          tags: ["Reference"],
          security: [],
          summary: "This document rendered for people (Redoc, served from this origin)",
          responses: { "200": { description: "HTML page", content: { "text/html": { schema: { type: "string" } } } } },
        },
      },
      "/workspaces": {
        post: {
          operationId: "createWorkspace",
          tags: ["Workspaces"],
          summary: "Create a workspace",
          parameters: [idempotencyHeader],
          requestBody: { required: true, content: { "application/json": { schema: { $ref: "#/components/schemas/CreateWorkspace" } } } },
          responses: {
            "201": json("Created; status is provisioning (or, for a replayed Idempotency-Key, the workspace as it is now)", "Workspace"),
            ...common,
            "409": err("A request with this Idempotency-Key is still being processed"),
            "422": err("This Idempotency-Key was used with a different body (idempotency_key_reused)"),
            "413": err("Body too large (counted after decompression)"),
            "415": err("Body is not UTF-8 JSON, or its Content-Encoding is not gzip, deflate or br"),
            "429": err("Creating workspaces too fast"),
          },
        },
        get: {
          operationId: "listWorkspaces",
          tags: ["Workspaces"],
          summary: "List the organisation's workspaces, newest first (cursor pagination: pass next_cursor back as cursor)",
          parameters: queryParams(listQuery),
          responses: { "200": json("A page of workspaces", "WorkspaceList"), ...common },
        },
      },
      "/workspaces/{id}": {
        parameters: [idParam],
        get: {
          operationId: "getWorkspace",
          tags: ["Workspaces"],
          summary: "Read a workspace (without a token: only id and status)",
          security: [{ bearer: [] }, {}],
          responses: { "200": json("The workspace (or {id, status} without a token)", "Workspace"), ...common },
        },
        delete: { operationId: "deleteWorkspace", tags: ["Workspaces"], summary: "Tear a workspace down (idempotent)", responses: { "202": json("Teardown started", "Workspace"), ...common } },
      },
      "/workspaces/{id}/restart": {
        parameters: [idParam],
        post: { operationId: "restartWorkspace", tags: ["Workspaces"], summary: "Re-provision a ready or failed workspace", responses: { "202": json("Restarting", "Workspace"), "409": err("Not restartable now"), ...common } },
      },
      "/workspaces/{id}/events": {
        parameters: [idParam],
        get: {
          operationId: "listWorkspaceEvents",
          tags: ["Workspaces"],
          summary: "Status changes and provisioning steps (queued, creating_sandbox, pulling_image, launching_instance, waiting_for_ssh, ready, failed…), oldest first",
          parameters: queryParams(eventsQuery),
          responses: { "200": json("A page of events; next_cursor is null on the last page", "EventPage"), ...common },
        },
      },
      "/workspaces/{id}/terminal/tickets": {
        parameters: [idParam],
        post: {
          operationId: "createTerminalTicket",
          tags: ["Terminal"],
          summary: "Single-use ticket for a browser WebSocket; {\"mode\":\"view\"} limits it to a viewer (session=<id>&mode=view)",
          requestBody: { required: false, content: { "application/json": { schema: { $ref: "#/components/schemas/TicketRequest" } } } },
          responses: { "201": json("Ticket", "Ticket"), ...common },
        },
      },
      "/workspaces/{id}/terminal/sessions/{sid}/recording": {
        parameters: [idParam, { name: "sid", in: "path", required: true, schema: { type: "string", format: "uuid" } }],
        get: {
          operationId: "getTerminalRecording",
          tags: ["Terminal"],
          summary: "The session's recording as asciicast v2; while the session is live the response follows it until the end",
          responses: {
            "200": { description: "asciicast v2 (a JSON header line, then one event per line)", content: { "application/x-asciicast": { schema: { type: "string" } } } },
            ...common,
            "503": err("This node serves no recordings"),
          },
        },
      },
      "/orgs/current/recording": {
        get: {
          operationId: "getRecordingSettings",
          tags: ["Terminal"],
          summary: "The organisation's session recording settings",
          responses: { "200": json("Settings", "RecordingSettings"), ...common },
        },
        patch: {
          operationId: "updateRecordingSettings",
          tags: ["Terminal"],
          summary: "Change recording on/off, retention (days) and input recording; sessions already recorded keep their recordings until retention says otherwise",
          requestBody: { required: true, content: { "application/json": { schema: { $ref: "#/components/schemas/RecordingSettingsPatch" } } } },
          responses: { "200": json("Settings as they are now", "RecordingSettings"), ...common },
        },
      },
      "/workspaces/{id}/terminal/sessions": {
        parameters: [idParam],
        get: {
          operationId: "listTerminalSessions",
          tags: ["Terminal"],
          summary: "Terminal session audit, newest first (cursor pagination)",
          parameters: queryParams(sessionsQuery),
          responses: { "200": json("A page of sessions; next_cursor is null on the last page", "TerminalSessionPage"), ...common },
        },
      },
      "/workspaces/{id}/terminal": {
        parameters: [idParam, ...queryParams(terminalQueryObject)],
        get: {
          operationId: "openTerminal",
          tags: ["Terminal"],
          summary: "WebSocket upgrade: the terminal (see docs/terminal-protocol.md)",
          responses: { "101": { description: "Switching protocols" }, ...common, "403": err("Origin not allowed"), "426": err("A plain GET without a WebSocket upgrade") },
        },
      },
    },
  };
}
